//! Where the console reads snapshots from: one [`SnapshotSource`] per location, fetched
//! together and merged into one view.
//!
//! [`LocalSource`] reads a [`Monitor`] of this process directly. [`WireSource`] asks a
//! monitor service with an encoded request over any [`Carrier`] and decodes the reply;
//! [`ProcSource`] is one whose carrier is [`Proc::deliver_remote`] in this process.
//! Other processes are read by a `GatewaySource` (module `remote`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use plexus_core::{Proc, RemoteMessage};
use tokio::sync::oneshot;

use crate::monitor::Monitor;
use crate::service::{MONITOR_ACTOR_NAME, SnapshotRequest};
use crate::snapshot::Snapshot;

/// Reads the snapshot of one location's monitor.
///
/// A console holds one source per location and [merges](fetch_merged) what they return,
/// so a source answers for its own location only and reports failures as a
/// [`SourceError`] instead of retrying: the next refresh is the retry. A source that keeps
/// a connection opens it on its first fetch and again after a failure, so building one
/// never waits.
///
/// ```
/// use plexus_monitor::Monitor;
/// use plexus_monitor::console::{LocalSource, SnapshotSource};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = LocalSource::new(Monitor::new());
/// let snapshot = source.fetch(Duration::from_secs(10)).await?;
/// assert!(snapshot.actors.is_empty());
/// assert_eq!(source.label(), "local");
/// # Ok(()) }
/// ```
pub trait SnapshotSource: Send + Sync {
    /// A short name of the location, shown on screen and in errors (e.g. `tcp://10.0.0.5:7000`).
    fn label(&self) -> &str;

    /// Fetches one snapshot, keeping stopped actors visible for `grave_window`.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; the source stays usable.
    fn fetch(&self, grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>>;
}

/// Why a source returned no snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The location could not be reached (connection refused, lost, ...).
    #[error("cannot reach {location}: {reason}")]
    Unreachable {
        /// The source's label.
        location: String,
        /// What the transport reported.
        reason: String,
    },
    /// The request was delivered but the other side did not answer with a snapshot: no
    /// monitor service there, or it stopped.
    #[error("{location} refused the snapshot request: {reason}")]
    Refused {
        /// The source's label.
        location: String,
        /// What the other side reported.
        reason: String,
    },
    /// The reply was not a snapshot this console can read.
    #[error("unreadable snapshot from {location}: {reason}")]
    Decode {
        /// The source's label.
        location: String,
        /// What the decoder reported.
        reason: String,
    },
    /// The console's own gateway or proc could not be set up.
    #[error("cannot set up the console's gateway: {reason}")]
    Gateway {
        /// What the gateway reported.
        reason: String,
    },
    /// No answer within the console's timeout.
    #[error("{location} did not answer within {after:?}")]
    TimedOut {
        /// The source's label.
        location: String,
        /// The timeout.
        after: Duration,
    },
}

/// A source that failed in one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceFailure {
    /// The source's label.
    pub label: String,
    /// What went wrong.
    pub error: SourceError,
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// What one round of fetches from every source gave.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Fetched {
    /// The merge of every snapshot that came back; `None` if none did.
    pub snapshot: Option<Snapshot>,
    /// The sources that failed, in the order of the sources.
    pub failures: Vec<SourceFailure>,
}

/// Fetches from every source at once, each bounded by `timeout`, and merges what comes
/// back (see [`Snapshot::merge`]). A failing source does not hide the others: its error
/// is listed in [`Fetched::failures`].
///
/// # Cancel safety
/// Dropping the future abandons every pending fetch.
pub async fn fetch_merged(
    sources: &[Box<dyn SnapshotSource>],
    grave_window: Duration,
    timeout: Duration,
) -> Fetched {
    let fetches = sources.iter().map(|source| async move {
        match tokio::time::timeout(timeout, source.fetch(grave_window)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SourceError::TimedOut {
                location: source.label().to_owned(),
                after: timeout,
            }),
        }
    });
    let outcomes = futures::future::join_all(fetches).await;
    let mut snapshots = Vec::new();
    let mut failures = Vec::new();
    for (source, outcome) in sources.iter().zip(outcomes) {
        match outcome {
            Ok(snapshot) => snapshots.push(snapshot),
            Err(error) => {
                tracing::debug!(source = source.label(), %error, "snapshot fetch failed");
                failures.push(SourceFailure {
                    label: source.label().to_owned(),
                    error,
                });
            }
        }
    }
    Fetched {
        snapshot: (!snapshots.is_empty()).then(|| Snapshot::merge(snapshots)),
        failures,
    }
}

/// Reads a [`Monitor`] of this process directly.
#[derive(Clone, Debug)]
pub struct LocalSource {
    monitor: Monitor,
    label: String,
}

impl LocalSource {
    /// A source labelled `local`.
    pub fn new(monitor: Monitor) -> Self {
        LocalSource::with_label(monitor, "local")
    }

    /// A source with its own label, to tell several local monitors apart.
    pub fn with_label(monitor: Monitor, label: impl Into<String>) -> Self {
        LocalSource {
            monitor,
            label: label.into(),
        }
    }
}

impl SnapshotSource for LocalSource {
    fn label(&self) -> &str {
        &self.label
    }

    fn fetch(&self, grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>> {
        let snapshot = self.monitor.snapshot(grave_window);
        futures::future::ready(Ok(snapshot)).boxed()
    }
}

/// Carries one encoded [`SnapshotRequest`] to a monitor service and resolves with the
/// encoded reply: the part of a [`WireSource`] that knows the way there.
pub type Carrier =
    Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, SourceError>> + Send + Sync>;

/// A source that asks a monitor service with an encoded [`SnapshotRequest`] and decodes
/// the reply, over any [`Carrier`]: a gateway's remote ask to
/// [`MONITOR_ACTOR_NAME`] at a location, or [`Proc::deliver_remote`] in this process (see
/// [`ProcSource`]).
///
/// ```
/// use futures::FutureExt;
/// use plexus_monitor::console::{SnapshotSource, SourceError, WireSource};
/// use plexus_monitor::{Monitor, SnapshotRequest};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A carrier that answers itself, where a real one crosses the network.
/// let monitor = Monitor::new();
/// let source = WireSource::new("loopback", move |request: Vec<u8>| {
///     let monitor = monitor.clone();
///     async move {
///         let request: SnapshotRequest = postcard::from_bytes(&request)
///             .map_err(|error| SourceError::Refused {
///                 location: "loopback".to_owned(),
///                 reason: error.to_string(),
///             })?;
///         Ok(postcard::to_allocvec(&monitor.snapshot(request.grave_window())).unwrap_or_default())
///     }
///     .boxed()
/// });
/// let snapshot = source.fetch(Duration::from_secs(10)).await?;
/// assert!(snapshot.actors.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WireSource {
    label: String,
    carrier: Carrier,
}

impl fmt::Debug for WireSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireSource")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl WireSource {
    /// A source labelled `label` that sends its requests through `carrier`.
    pub fn new<F>(label: impl Into<String>, carrier: F) -> Self
    where
        F: Fn(Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, SourceError>> + Send + Sync + 'static,
    {
        WireSource {
            label: label.into(),
            carrier: Arc::new(carrier),
        }
    }
}

impl SnapshotSource for WireSource {
    fn label(&self) -> &str {
        &self.label
    }

    fn fetch(&self, grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>> {
        let reply = (self.carrier)(encode_request(grave_window));
        async move { decode_snapshot(&self.label, &reply.await?) }.boxed()
    }
}

/// Asks the monitor service of a proc of this process (see [`Monitor::serve_on`])
/// through [`Proc::deliver_remote`]: the request is encoded and the reply decoded exactly
/// as they cross a gateway, so this is a [`WireSource`] whose carrier is the last step
/// of every remote delivery.
#[derive(Clone, Debug)]
pub struct ProcSource {
    wire: WireSource,
}

impl ProcSource {
    /// A source labelled with the proc's id.
    pub fn new(proc: Proc) -> Self {
        let label = proc.id().to_string();
        let location = label.clone();
        let wire = WireSource::new(label, move |request: Vec<u8>| {
            deliver_request(&proc, &location, &request).boxed()
        });
        ProcSource { wire }
    }
}

impl SnapshotSource for ProcSource {
    fn label(&self) -> &str {
        self.wire.label()
    }

    fn fetch(&self, grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>> {
        self.wire.fetch(grave_window)
    }
}

/// Hands an encoded request to the proc's monitor service as a remote ask and returns a
/// future of the encoded reply. Delivery happens now, never waiting on the service.
fn deliver_request(
    proc: &Proc,
    location: &str,
    request: &[u8],
) -> impl Future<Output = Result<Vec<u8>, SourceError>> + Send + 'static {
    let refused = {
        let location = location.to_owned();
        move |reason: String| SourceError::Refused {
            location: location.clone(),
            reason,
        }
    };
    let (reply, answer) = oneshot::channel();
    let delivered = proc.deliver_remote(
        MONITOR_ACTOR_NAME,
        SnapshotRequest::NAME,
        request,
        Some(Box::new(move |outcome| {
            // The fetch may have been dropped; nobody is left to tell.
            let _ = reply.send(outcome);
        })),
    );
    async move {
        // On a refused delivery the reply was answered with the same error already.
        delivered.map_err(|error| refused(error.to_string()))?;
        answer
            .await
            .map_err(|_| refused("the reply was dropped".to_owned()))?
            .map_err(|error| refused(error.to_string()))
    }
}

/// The postcard payload of a [`SnapshotRequest`] with this grave window, to send to
/// [`MONITOR_ACTOR_NAME`] under [`SnapshotRequest::NAME`].
pub fn encode_request(grave_window: Duration) -> Vec<u8> {
    // A struct of one integer always encodes; the empty fallback would be refused by the
    // service as undecodable, never misread.
    postcard::to_allocvec(&SnapshotRequest::new(grave_window)).unwrap_or_default()
}

/// Decodes the postcard reply of a [`SnapshotRequest`] from the source labelled
/// `location`.
pub fn decode_snapshot(location: &str, encoded: &[u8]) -> Result<Snapshot, SourceError> {
    postcard::from_bytes(encoded).map_err(|error| SourceError::Decode {
        location: location.to_owned(),
        reason: error.to_string(),
    })
}
