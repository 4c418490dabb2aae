//! The contract of a message that can cross a process boundary: [`RemoteMessage`].

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A message that can be sent to an actor in another process or on another host.
///
/// It is encoded with serde (postcard on the wire) and identified by a stable [`NAME`]
/// that both sides agree on; the receiving side decodes by name and dispatches to the
/// actor's typed handler. Two different types registered under one name are an error found
/// when the registry is built, not at first use.
///
/// [`NAME`]: RemoteMessage::NAME
///
/// ```
/// use plexus_core::RemoteMessage;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Deposit {
///     account: u64,
///     cents: i64,
/// }
///
/// impl RemoteMessage for Deposit {
///     const NAME: &'static str = "bank.Deposit";
/// }
/// assert_eq!(Deposit::NAME, "bank.Deposit");
/// ```
pub trait RemoteMessage: Serialize + DeserializeOwned + Send + 'static {
    /// The stable name of this message type on the wire. Keep it unchanged across versions
    /// of a program that must talk to each other; a dotted, namespaced form is recommended.
    const NAME: &'static str;
}
