//! [`RemoteActor`] and the per-type codec table its remote refs use: for each message type
//! the actor accepts remotely, how to encode it and how to decode the handler's reply.
//!
//! `ActorRef::tell<M>` has no `Serialize` bound, so a remote ref finds the encoder of `M`
//! by `TypeId` in a table built once per actor type from
//! [`RemoteActor::remote_handlers`] and cached for the whole process. A message type not
//! in the table fails with a typed `NotRemote` error naming it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::Actor;
use crate::dispatch::RemoteHandlers;
use crate::remote::RemoteMessage;

/// An actor type that can be reached through remote refs: it names, once, the remote
/// messages it accepts.
///
/// The same table serves both sides: the proc that runs the actor exposes it with
/// [`Proc::expose_remote`](crate::Proc::expose_remote), and a remote ref to an actor of
/// this type encodes messages and decodes replies with it. A ref can only be decoded from
/// a message (or found with [`Proc::lookup_remote`](crate::Proc::lookup_remote)) for a
/// `RemoteActor`.
///
/// ```
/// use plexus_core::{Actor, Context, Handler, RemoteActor, RemoteHandlers, RemoteMessage};
/// use serde::{Deserialize, Serialize};
///
/// struct Counter(u64);
/// impl Actor for Counter {}
///
/// #[derive(Serialize, Deserialize)]
/// struct Add(u64);
/// impl RemoteMessage for Add {
///     const NAME: &'static str = "counter.Add";
/// }
/// impl Handler<Add> for Counter {
///     type Reply = u64;
///     async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> u64 {
///         self.0 += n;
///         self.0
///     }
/// }
///
/// impl RemoteActor for Counter {
///     fn remote_handlers() -> RemoteHandlers<Self> {
///         RemoteHandlers::new().ask::<Add>()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let proc = plexus_core::Proc::new(plexus_core::ProcId::unique("docs"));
/// let counter = proc.spawn("counter", Counter(0))?;
/// proc.expose_remote(&counter)?;
/// // Locally the ref works as always; a proc elsewhere reaches the same actor through
/// // `Proc::lookup_remote::<Counter>(&addr, "counter")` once both procs have routes.
/// assert_eq!(counter.ask(Add(2)).await?, 2);
/// # Ok(()) }
/// ```
pub trait RemoteActor: Actor {
    /// The remote messages this actor type accepts. Called once per process for the
    /// codec table of remote refs, and by every `expose_remote`.
    fn remote_handlers() -> RemoteHandlers<Self>;
}

/// Encodes a message given as `&dyn Any` of the registered type.
pub(crate) type EncodeFn = fn(&dyn Any) -> Result<Vec<u8>, String>;

/// Decodes a reply into a box of the registered reply type.
pub(crate) type DecodeReplyFn = fn(&[u8]) -> Result<Box<dyn Any + Send>, String>;

/// How one message type travels to an actor type.
#[derive(Clone, Copy)]
pub(crate) struct MessageCodec {
    /// The wire name.
    pub(crate) name: &'static str,
    pub(crate) encode: EncodeFn,
    /// `None` when the message is registered as a tell only.
    pub(crate) decode_reply: Option<DecodeReplyFn>,
}

/// The codecs of one actor type, by message `TypeId`. Looked up on every remote tell, so
/// hashed with foldhash rather than SipHash.
pub(crate) struct RemoteCodecs {
    pub(crate) by_type: foldhash::HashMap<TypeId, MessageCodec>,
}

/// Messages up to this many bytes are encoded on the stack first.
const SMALL_MESSAGE: usize = 128;

pub(crate) fn encode<M: RemoteMessage>(message: &dyn Any) -> Result<Vec<u8>, String> {
    match message.downcast_ref::<M>() {
        Some(message) => encode_exact(message).map_err(|error| error.to_string()),
        None => Err(format!(
            "the codec of {} was given another type",
            std::any::type_name::<M>()
        )),
    }
}

/// The postcard bytes of `message` in a vector exactly as long as its capacity: the
/// gateway turns the payload into `Bytes`, which takes such a vector without allocating
/// again (a vector with spare room costs one more allocation there). A small message is
/// encoded on the stack and copied once; a larger one in a growing vector.
fn encode_exact<M: serde::Serialize>(message: &M) -> postcard::Result<Vec<u8>> {
    let mut small = [0u8; SMALL_MESSAGE];
    match postcard::to_slice(message, &mut small) {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(postcard::Error::SerializeBufferFull) => postcard::to_allocvec(message),
        Err(error) => Err(error),
    }
}

pub(crate) fn decode_reply<R>(payload: &[u8]) -> Result<Box<dyn Any + Send>, String>
where
    R: Serialize + DeserializeOwned + Send + 'static,
{
    postcard::from_bytes::<R>(payload)
        .map(|reply| Box::new(reply) as Box<dyn Any + Send>)
        .map_err(|error| error.to_string())
}

type Tables = RwLock<HashMap<TypeId, Arc<RemoteCodecs>>>;

/// The codec table of `A`, built on first use and shared by every remote ref to an `A`.
pub(crate) fn codecs_of<A: RemoteActor>() -> Arc<RemoteCodecs> {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    let tables = TABLES.get_or_init(Tables::default);
    let key = TypeId::of::<A>();
    if let Some(codecs) = tables
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return codecs.clone();
    }
    // Built outside the lock: user code runs here. Two racing builders make equal tables.
    let codecs = Arc::new(A::remote_handlers().codecs());
    tables
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert(codecs)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small message comes out in a vector without spare room (so `Bytes` takes it as
    /// it is), and one past the stack buffer is encoded all the same.
    #[test]
    fn encoded_payloads_are_exact_and_round_trip() {
        let small = encode_exact(&(7u64, "hi")).expect("a small message encodes");
        assert_eq!(small.len(), small.capacity());
        assert_eq!(
            postcard::from_bytes::<(u64, &str)>(&small).ok(),
            Some((7, "hi"))
        );

        let text = "x".repeat(SMALL_MESSAGE * 3);
        let large = encode_exact(&text).expect("a large message encodes");
        assert_eq!(postcard::from_bytes::<String>(&large).ok(), Some(text));
    }
}
