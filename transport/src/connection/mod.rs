//! The connection worker: moves envelopes over one stream after its handshake.
//!
//! [`spawn_connection`] splits the stream and starts three tasks:
//!
//! - the **writer** (module `writer`) drains the send queue into a [`FrameEncoder`] and writes
//!   a batch when the queue is empty or the encoder advises a flush, so a burst of sends
//!   costs a few frames and a few write calls; it also sends a ping every
//!   [`ConnectionConfig::ping_interval`];
//! - the **reader** (module `reader`) feeds what arrives into a [`FrameDecoder`], answers pings,
//!   measures the round-trip time from pongs, routes responses to their requests, and
//!   hands every other envelope to the [`Inbound`] handler; it closes the connection when
//!   nothing arrived for [`ConnectionConfig::idle_timeout`];
//! - a **supervisor** waits for the first of the two to end (or for
//!   [`ConnectionHandle::close`]), stops the other, fails every in-flight request with
//!   [`RequestError::Disconnected`](crate::RequestError), and publishes the
//!   [`ConnectionError`] that ended the connection.
//!
//! A send that finds the connection idle writes its envelope itself instead of waking
//! the writer (module `outbox`, which owns the encoder and the writing half): a lone ask
//! and its reply then cost no hand-off to another task.
//!
//! ```text
//! ConnectionHandle::send ──queue──▶ writer ──frames──▶ stream ──▶ peer
//!            └──idle: encode and write on the sender's task──▶ stream
//! Inbound::deliver ◀── reader ◀──frames── stream ◀── peer
//!                        └──pongs, failed responses──▶ writer
//! ```
//!
//! **Architecture invariant:** the reader never awaits a recipient. [`Inbound::deliver`]
//! is synchronous and must not block, and the reader's own replies go to the writer
//! through the control lane (module `control`) without waiting: pongs and `Failed`
//! responses through a bounded queue that drops at overflow, flow credit through a lane
//! that never drops and is bounded by the flow windows. One slow actor can therefore
//! never stall the other traffic of its connection; per-flow queues and credit
//! (design 3.4) build on this.
//!
//! [`FrameEncoder`]: plexus_codec::FrameEncoder
//! [`FrameDecoder`]: plexus_codec::FrameDecoder

mod control;
mod flow;
mod inproc;
mod outbox;
mod reader;
mod writer;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plexus_codec::{CodecConfig, CodecError, FrameDecoder, FrameEncoder, NetworkEnvelope, Skipped};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::flow::{
    FlowConfigError, FlowError, FlowTarget, SendFlows, SendWindow, envelope_bytes, flow_key,
};
use crate::handshake::Negotiated;
use crate::requests::Requests;

/// The settings of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// How often a ping is sent. Default 5 s; must be non-zero and below `idle_timeout`.
    pub ping_interval: Duration,
    /// How long the connection may receive nothing before it is closed. Default 30 s; must
    /// exceed `ping_interval`. A live peer answers every ping, so it is closed only if no
    /// pong arrives for `idle_timeout - ping_interval`; a dead or silent one is closed
    /// exactly `idle_timeout` after its last byte.
    pub idle_timeout: Duration,
    /// How many envelopes [`ConnectionHandle::send`] may queue before it waits for the
    /// writer. Default 4096; must be non-zero.
    pub queue_capacity: usize,
    /// The size of the reader's buffer, the most one read call takes. Default 64 KiB; must
    /// be non-zero.
    pub read_buffer: usize,
    /// The codec settings. The encoder uses the capabilities both sides negotiated and the
    /// smaller of the two frame limits; the decoder uses this frame limit.
    pub codec: CodecConfig,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            ping_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            queue_capacity: 4096,
            read_buffer: 64 * 1024,
            codec: CodecConfig::default(),
        }
    }
}

impl ConnectionConfig {
    /// Checks the bounds documented on each field.
    pub fn validate(&self) -> Result<(), ConnectionConfigError> {
        if self.ping_interval.is_zero() || self.ping_interval >= self.idle_timeout {
            return Err(ConnectionConfigError::PingInterval {
                ping_interval: self.ping_interval,
                idle_timeout: self.idle_timeout,
            });
        }
        if self.queue_capacity == 0 {
            return Err(ConnectionConfigError::Zero {
                field: "queue_capacity",
            });
        }
        if self.read_buffer == 0 {
            return Err(ConnectionConfigError::Zero {
                field: "read_buffer",
            });
        }
        Ok(())
    }
}

/// A [`ConnectionConfig`] outside its bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionConfigError {
    /// The ping interval is zero or not below the idle timeout, so a live but quiet
    /// connection would be closed.
    #[error(
        "ping interval {ping_interval:?} must be non-zero and below the idle timeout {idle_timeout:?}"
    )]
    PingInterval {
        /// The configured ping interval.
        ping_interval: Duration,
        /// The configured idle timeout.
        idle_timeout: Duration,
    },
    /// A size that must be non-zero is zero.
    #[error("{field} must be non-zero")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// The local hello announced a flow window but no flow target was given, so the
    /// credit the peer spends would never come back.
    #[error("the hello announced flow control but the connection has no flow target")]
    FlowTargetMissing,
    /// A flow target was given but the local hello announced no flow window, so the peer
    /// would send without credit.
    #[error("a flow target was given but the hello announced no flow window")]
    FlowNotAnnounced,
    /// The flow window is out of its bounds.
    #[error(transparent)]
    Flow(#[from] FlowConfigError),
}

/// Why a connection ended.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer closed the stream at a frame boundary.
    #[error("peer closed the connection")]
    PeerClosed,
    /// The peer sent bytes that are not a valid frame stream (or ended inside a frame).
    #[error("malformed input from peer: {0}")]
    Malformed(#[source] CodecError),
    /// Nothing arrived for the idle timeout.
    #[error("no data received for {idle:?}, closing")]
    IdleTimeout {
        /// The configured idle timeout.
        idle: Duration,
    },
    /// Reading or writing the stream failed.
    #[error("i/o error on the connection: {0}")]
    Io(#[source] Arc<io::Error>),
    /// The peer broke flow control (sent beyond its credit), so the two ends no longer
    /// agree on the windows.
    #[error("peer broke flow control: {0}")]
    Flow(#[source] FlowError),
    /// [`ConnectionHandle::close`] was called or every handle was dropped.
    #[error("connection closed locally")]
    ClosedLocally,
    /// The reader or the writer task panicked or was cancelled by the runtime.
    #[error("connection task ended abnormally: {reason}")]
    TaskFailed {
        /// What the runtime reported.
        reason: String,
    },
}

impl From<io::Error> for ConnectionError {
    fn from(error: io::Error) -> Self {
        ConnectionError::Io(Arc::new(error))
    }
}

/// Why [`ConnectionHandle::send`] did not queue an envelope. The envelope is handed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed.
    #[error("connection is closed")]
    Closed(NetworkEnvelope),
    /// Flow control refused the envelope for good: its flow was closed by the peer (the
    /// recipient is gone), or it is larger than any window admits.
    #[error("flow control refused the envelope: {error}")]
    Flow {
        /// The envelope.
        envelope: NetworkEnvelope,
        /// Why: [`FlowError::Closed`] or [`FlowError::TooLarge`].
        error: FlowError,
    },
}

impl SendError {
    /// The envelope that was not queued.
    pub fn into_envelope(self) -> NetworkEnvelope {
        match self {
            SendError::Closed(envelope) | SendError::Flow { envelope, .. } => envelope,
        }
    }
}

/// Why [`ConnectionHandle::try_send`] did not queue an envelope. The envelope is handed
/// back in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// The send queue is full now; the writer is behind.
    #[error("connection send queue is full")]
    Full(NetworkEnvelope),
    /// The connection is closed.
    #[error("connection is closed")]
    Closed(NetworkEnvelope),
    /// Flow control refused the envelope: [`FlowError::NoCredit`] when its flow has no
    /// credit now (waiting, as [`ConnectionHandle::send`] does, would help), or
    /// [`FlowError::Closed`] / [`FlowError::TooLarge`] for good.
    #[error("flow control refused the envelope: {error}")]
    Flow {
        /// The envelope.
        envelope: NetworkEnvelope,
        /// Why.
        error: FlowError,
    },
}

impl TrySendError {
    /// The envelope that was not queued.
    pub fn into_envelope(self) -> NetworkEnvelope {
        match self {
            TrySendError::Full(envelope)
            | TrySendError::Closed(envelope)
            | TrySendError::Flow { envelope, .. } => envelope,
        }
    }

    /// Whether the envelope's flow had no credit now, so that waiting would help.
    pub fn is_no_credit(&self) -> bool {
        matches!(
            self,
            TrySendError::Flow {
                error: FlowError::NoCredit { .. },
                ..
            }
        )
    }
}

/// Where the reader hands the envelopes it decodes.
///
/// **It must not block**: the reader calls it inline for every envelope, so a handler that
/// waits stalls the whole connection (pings included, which then looks like a dead peer).
/// Put the envelope in a queue and return. Pings, pongs and responses to requests made
/// with [`ConnectionHandle::request`] are handled by the connection and never reach it.
///
/// A closure `Fn(NetworkEnvelope)` is an `Inbound`.
pub trait Inbound: Send + Sync + 'static {
    /// Takes one decoded envelope.
    fn deliver(&self, envelope: NetworkEnvelope);

    /// Takes one decoded envelope together with the connection it arrived on, so that a
    /// request can be answered on that very connection. The reader always calls this one;
    /// the default forgets `from` and calls [`deliver`](Self::deliver).
    ///
    /// `from` does not keep the connection open: keep a clone of it (it is cheap) for as
    /// long as the answer may take.
    fn deliver_from(&self, envelope: NetworkEnvelope, from: &ConnectionRef) {
        let _ = from;
        self.deliver(envelope);
    }

    /// Told about an envelope that did not decode, after the connection logged it and, for
    /// a request, answered `Failed`. The default does nothing.
    fn skipped(&self, skipped: &Skipped) {
        let _ = skipped;
    }
}

impl<F> Inbound for F
where
    F: Fn(NetworkEnvelope) + Send + Sync + 'static,
{
    fn deliver(&self, envelope: NetworkEnvelope) {
        self(envelope)
    }
}

/// Credit spent for an envelope not yet queued: given back when dropped unless kept.
struct Spent {
    window: Option<Arc<SendWindow>>,
    bytes: u64,
}

impl Spent {
    /// No credit spent: the envelope is not flow controlled here.
    fn nothing() -> Self {
        Spent {
            window: None,
            bytes: 0,
        }
    }

    /// The envelope was queued: the credit stays spent.
    fn keep(mut self) {
        self.window = None;
    }
}

/// Spends the credit `envelope` costs from `window`, or nothing when there is none (the
/// envelope is not flow controlled); fails with [`FlowError::NoCredit`] when there is
/// none now.
fn spend_from(
    window: Option<Arc<SendWindow>>,
    envelope: &NetworkEnvelope,
) -> Result<Spent, FlowError> {
    let Some(window) = window else {
        return Ok(Spent::nothing());
    };
    let bytes = envelope_bytes(envelope);
    window.try_acquire(bytes)?;
    Ok(Spent {
        window: Some(window),
        bytes,
    })
}

impl Drop for Spent {
    fn drop(&mut self) {
        if let Some(window) = self.window.take() {
            window.grant(1, self.bytes);
        }
    }
}

/// Why [`ConnectionHandle::send_now`] could not queue an envelope at once.
enum NotNow {
    /// Refused for good; the envelope is in the error.
    Refused(SendError),
    /// Waiting would help: for credit (`spent` is `None`) or for room in the queue.
    Wait {
        envelope: NetworkEnvelope,
        spent: Option<Spent>,
    },
}

/// Counters of one connection, for tests, metrics and the monitor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Envelopes encoded and written, pings and pongs included.
    pub envelopes_sent: u64,
    /// Write batches: each is one run of frames handed to the stream in one `write_all`.
    pub writes: u64,
    /// Envelopes decoded, skipped ones included.
    pub envelopes_received: u64,
}

/// State shared by the handles and the tasks of one connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) requests: Requests,
    envelopes_sent: AtomicU64,
    writes: AtomicU64,
    envelopes_received: AtomicU64,
    /// The last round-trip time in nanoseconds; 0 before the first pong.
    rtt_nanos: AtomicU64,
    /// The connection's clock origin: ping nonces are nanoseconds since it.
    epoch: Instant,
    close: Notify,
    /// Asks the writer to stop taking sends, write what is queued and end the stream.
    drain: Notify,
    /// Set by [`ConnectionHandle::close_gracefully`]: the supervisor then lets the reader
    /// run to the peer's end of stream instead of cutting it off.
    draining: std::sync::atomic::AtomicBool,
    closed: watch::Receiver<Option<ConnectionError>>,
    peer: Negotiated,
    /// The credit windows of the flows this side sends, when the peer runs flow control.
    pub(crate) send_flows: Option<SendFlows>,
    /// The encoder and the stream, for sends that write directly; `None` for in-process
    /// connections, which have no stream.
    outbox: Option<Arc<outbox::Outbox>>,
}

/// A weak reference to a connection, handed to [`Inbound::deliver_from`] so the envelope's
/// answer can go back the way it came.
///
/// Unlike a [`ConnectionHandle`] it does not keep the connection open: once every handle
/// is dropped (or the connection ends) its sends fail with the envelope handed back.
#[derive(Clone, Debug)]
pub struct ConnectionRef {
    queue: mpsc::WeakSender<NetworkEnvelope>,
    shared: std::sync::Weak<Shared>,
}

impl ConnectionRef {
    /// A handle to the connection, if it is still open. Holding the handle keeps the
    /// connection open.
    pub fn upgrade(&self) -> Option<ConnectionHandle> {
        let queue = self.queue.upgrade()?;
        let shared = self.shared.upgrade()?;
        if shared.closed.borrow().is_some() {
            return None;
        }
        Some(ConnectionHandle { queue, shared })
    }

    /// Queues `envelope` on the connection, like [`ConnectionHandle::send`]. Fails with
    /// the envelope handed back when the connection is gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped before it completes, the envelope was not
    /// queued.
    pub async fn send(&self, envelope: NetworkEnvelope) -> Result<(), SendError> {
        match self.upgrade() {
            Some(connection) => connection.send(envelope).await,
            None => Err(SendError::Closed(envelope)),
        }
    }

    /// Queues `envelope` on the connection if there is room now, like
    /// [`ConnectionHandle::try_send`].
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value, as the channel's own errors do"
    )]
    pub fn try_send(&self, envelope: NetworkEnvelope) -> Result<(), TrySendError> {
        match self.upgrade() {
            Some(connection) => connection.try_send(envelope),
            None => Err(TrySendError::Closed(envelope)),
        }
    }

    /// Whether the connection has ended (or every handle to it is gone).
    pub fn is_closed(&self) -> bool {
        self.upgrade().is_none()
    }

    /// Waits until the connection has ended and returns why, without keeping it open
    /// meanwhile; `None` when its state is already gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only observes.
    pub async fn closed(&self) -> Option<ConnectionError> {
        let mut closed = self.shared.upgrade()?.closed.clone();
        match closed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        }
    }

    /// Whether `self` and `other` refer to the same connection.
    pub fn same_connection(&self, other: &ConnectionRef) -> bool {
        std::sync::Weak::ptr_eq(&self.shared, &other.shared)
    }
}

impl Shared {
    fn new(
        negotiated: &Negotiated,
        closed: watch::Receiver<Option<ConnectionError>>,
        outbox: Option<Arc<outbox::Outbox>>,
    ) -> Self {
        Shared {
            requests: Requests::default(),
            envelopes_sent: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            envelopes_received: AtomicU64::new(0),
            rtt_nanos: AtomicU64::new(0),
            epoch: Instant::now(),
            close: Notify::new(),
            drain: Notify::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            closed,
            peer: negotiated.clone(),
            send_flows: negotiated.peer_flow.clone().map(SendFlows::new),
            outbox,
        }
    }
}

/// A cheap, cloneable handle to a running connection.
///
/// When every handle is dropped the connection closes itself.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    queue: mpsc::Sender<NetworkEnvelope>,
    pub(crate) shared: Arc<Shared>,
}

impl ConnectionHandle {
    /// Queues `envelope` for the writer, waiting while the queue is full.
    ///
    /// Fails once the connection has ended. Success means the envelope was queued, not
    /// that it reached the peer.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped before it completes, the envelope was not
    /// queued.
    pub async fn send(&self, envelope: NetworkEnvelope) -> Result<(), SendError> {
        // The common case, credit and room both there, completes here without awaiting.
        // Only a send that has to wait builds the waiting future, on the heap: it is
        // several times the size of an envelope, and an inline one made every send's
        // future that large, which cost a copy of it per send.
        match self.send_now(envelope) {
            Ok(()) => Ok(()),
            Err(NotNow::Refused(error)) => Err(error),
            Err(NotNow::Wait { envelope, spent }) => {
                Box::pin(self.send_waiting(envelope, spent)).await
            }
        }
    }

    /// Queues `envelope` if its credit and the queue's room are there now.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value; the caller goes on with it"
    )]
    fn send_now(&self, envelope: NetworkEnvelope) -> Result<(), NotNow> {
        let spent = match self.try_spend(&envelope) {
            Ok(spent) => spent,
            Err(FlowError::NoCredit { .. }) => {
                return Err(NotNow::Wait {
                    envelope,
                    spent: None,
                });
            }
            Err(error) => return Err(NotNow::Refused(self.refused(envelope, error))),
        };
        if self.write_directly(&envelope) {
            spent.keep();
            return Ok(());
        }
        match self.queue.try_send(envelope) {
            Ok(()) => {
                spent.keep();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(envelope)) => Err(NotNow::Wait {
                envelope,
                spent: Some(spent),
            }),
            // `spent` is dropped here, which gives the credit back.
            Err(mpsc::error::TrySendError::Closed(envelope)) => {
                Err(NotNow::Refused(SendError::Closed(envelope)))
            }
        }
    }

    /// Writes `envelope` on the caller's task when the connection is idle (see module
    /// `outbox`); `false` when it is to be queued. Borrowing it keeps the common case,
    /// a queued send, free of moving it in and out.
    fn write_directly(&self, envelope: &NetworkEnvelope) -> bool {
        match &self.shared.outbox {
            Some(outbox) => outbox.try_write(envelope, &self.queue, &self.shared),
            None => false,
        }
    }

    /// The rest of [`send`](Self::send) once it has to wait: for credit when `spent` is
    /// `None`, then for room in the queue. Dropping `spent` unqueued (a cancelled send, a
    /// closed queue) gives the credit back, so a cancelled send never shrinks its flow's
    /// window.
    async fn send_waiting(
        &self,
        envelope: NetworkEnvelope,
        spent: Option<Spent>,
    ) -> Result<(), SendError> {
        let spent = match spent {
            Some(spent) => spent,
            None => self.spend(&envelope).await?,
        };
        match self.queue.send(envelope).await {
            Ok(()) => {
                spent.keep();
                Ok(())
            }
            Err(e) => Err(SendError::Closed(e.0)),
        }
    }

    /// Spends the credit `envelope` costs when the peer runs flow control and the
    /// envelope is flow controlled (a tell or a request to an actor or a group), or fails
    /// at once, with [`FlowError::NoCredit`] when there is none now. Responses and control
    /// envelopes spend nothing.
    fn try_spend(&self, envelope: &NetworkEnvelope) -> Result<Spent, FlowError> {
        spend_from(self.send_window(envelope), envelope)
    }

    /// Like [`try_spend`](Self::try_spend), waiting for a grant while there is no credit.
    async fn spend(&self, envelope: &NetworkEnvelope) -> Result<Spent, SendError> {
        let (Some(flows), Some(key)) = (&self.shared.send_flows, flow_key(envelope)) else {
            return Ok(Spent::nothing());
        };
        let window = flows.window_for(key);
        let bytes = envelope_bytes(envelope);
        match window.acquire(bytes).await {
            Ok(()) => Ok(Spent {
                window: Some(window),
                bytes,
            }),
            Err(error) => Err(self.refused(envelope.clone(), error)),
        }
    }

    /// The error for an envelope whose flow refused it: `Closed` when the refusal only
    /// came from the connection ending (its windows are all closed then).
    fn refused(&self, envelope: NetworkEnvelope, error: FlowError) -> SendError {
        if self.shared.closed.borrow().is_some() {
            SendError::Closed(envelope)
        } else {
            SendError::Flow { envelope, error }
        }
    }

    /// Queues `envelope` if its flow has credit and the send queue has room now; never
    /// waits. Fails with the envelope handed back otherwise: [`TrySendError::Flow`] with
    /// [`FlowError::NoCredit`] when the flow's window is spent, [`TrySendError::Full`]
    /// when the queue is full (the credit is then given back).
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value, as the channel's own errors do"
    )]
    pub fn try_send(&self, envelope: NetworkEnvelope) -> Result<(), TrySendError> {
        let window = self.send_window(&envelope);
        self.try_send_spending(window, envelope)
    }

    /// The send window of `envelope`'s flow on this connection, or `None` when the
    /// envelope is not flow controlled here. A held window stays its flow's window (idle
    /// windows are forgotten only when nobody holds them), so a sender of many envelopes
    /// of one flow looks it up once and passes it to [`try_send_in`](Self::try_send_in),
    /// sparing the flow table's lock per envelope.
    pub(crate) fn send_window(&self, envelope: &NetworkEnvelope) -> Option<Arc<SendWindow>> {
        let (Some(flows), Some(key)) = (&self.shared.send_flows, flow_key(envelope)) else {
            return None;
        };
        Some(flows.window_for(key))
    }

    /// [`try_send`](Self::try_send) spending from `window`, which
    /// [`send_window`](Self::send_window) gave for an envelope of the same flow.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value, as the channel's own errors do"
    )]
    #[inline]
    pub(crate) fn try_send_in(
        &self,
        window: Option<&Arc<SendWindow>>,
        envelope: NetworkEnvelope,
    ) -> Result<(), TrySendError> {
        // The flow's window holds for every envelope of the flow that is flow controlled;
        // one of another kind (a control envelope spends nothing, a tell after one does)
        // is looked up as `try_send` would, so none skips the credit it costs.
        let controlled = self.shared.send_flows.is_some() && flow_key(&envelope).is_some();
        if controlled != window.is_some() {
            return self.try_send(envelope);
        }
        self.try_send_spending(window.cloned(), envelope)
    }

    /// The body of [`try_send`](Self::try_send), with the flow's window already found.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value, as the channel's own errors do"
    )]
    #[inline]
    fn try_send_spending(
        &self,
        window: Option<Arc<SendWindow>>,
        envelope: NetworkEnvelope,
    ) -> Result<(), TrySendError> {
        let spent = match spend_from(window, &envelope) {
            Ok(spent) => spent,
            Err(error) => {
                return Err(match self.refused(envelope, error) {
                    SendError::Closed(envelope) => TrySendError::Closed(envelope),
                    SendError::Flow { envelope, error } => TrySendError::Flow { envelope, error },
                });
            }
        };
        if self.write_directly(&envelope) {
            spent.keep();
            return Ok(());
        }
        match self.queue.try_send(envelope) {
            Ok(()) => {
                spent.keep();
                Ok(())
            }
            // `spent` is dropped here, which gives the credit back.
            Err(mpsc::error::TrySendError::Full(envelope)) => Err(TrySendError::Full(envelope)),
            Err(mpsc::error::TrySendError::Closed(envelope)) => Err(TrySendError::Closed(envelope)),
        }
    }

    /// Whether the peer runs flow control, so that tells and requests spend credit.
    pub fn is_flow_controlled(&self) -> bool {
        self.shared.send_flows.is_some()
    }

    /// The credit left on the flow of `envelope`, as (messages, bytes), or `None` when
    /// the envelope is not flow controlled on this connection.
    pub fn credit_for(&self, envelope: &NetworkEnvelope) -> Option<(u32, u64)> {
        let flows = self.shared.send_flows.as_ref()?;
        Some(flows.window_for(flow_key(envelope)?).available())
    }

    /// A weak reference to this connection, which does not keep it open.
    pub fn downgrade(&self) -> ConnectionRef {
        ConnectionRef {
            queue: self.queue.downgrade(),
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Waits until the connection has ended and returns why.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only observes.
    pub async fn closed(&self) -> ConnectionError {
        let mut closed = self.shared.closed.clone();
        match closed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(ConnectionError::ClosedLocally),
            // The supervisor publishes before it drops the sender; reaching this means it
            // was dropped with the runtime.
            Err(_) => ConnectionError::TaskFailed {
                reason: "the connection's supervisor is gone".into(),
            },
        }
    }

    /// Why the connection ended, or `None` while it runs.
    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.shared.closed.borrow().clone()
    }

    /// Closes the connection now. Queued envelopes that were not written are dropped and
    /// in-flight requests fail with `Disconnected`.
    pub fn close(&self) {
        self.shared.close.notify_one();
    }

    /// Closes the connection without losing what is queued: sends are refused from now
    /// on, the writer writes every queued envelope and ends the stream, and the reader
    /// goes on until the peer ends its side too (or the idle timeout), so what the peer
    /// still sends arrives. Used to retire the loser of two simultaneous dials. Requests
    /// still unanswered when the reader ends fail with `Disconnected`.
    pub fn close_gracefully(&self) {
        self.shared.draining.store(true, Ordering::Release);
        self.shared.drain.notify_one();
    }

    /// The round-trip time measured by the last pong, or `None` before the first.
    pub fn rtt(&self) -> Option<Duration> {
        match self.shared.rtt_nanos.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// What the handshake agreed on with the peer.
    pub fn peer(&self) -> &Negotiated {
        &self.shared.peer
    }

    /// The connection's counters.
    pub fn stats(&self) -> ConnectionStats {
        let shared = &self.shared;
        ConnectionStats {
            envelopes_sent: shared.envelopes_sent.load(Ordering::Relaxed),
            writes: shared.writes.load(Ordering::Relaxed),
            envelopes_received: shared.envelopes_received.load(Ordering::Relaxed),
        }
    }

    /// How many requests made with [`request`](Self::request) await their response.
    pub fn requests_in_flight(&self) -> usize {
        self.shared.requests.in_flight()
    }
}

/// Starts the worker of a connection whose handshake produced `negotiated`, and returns its
/// handle. `inbound` receives every envelope the peer sends (see [`Inbound`]).
///
/// ```
/// use std::time::Duration;
///
/// use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome};
/// use plexus_core::ProcId;
/// use plexus_transport::{ConnectionConfig, Hello, perform_handshake, spawn_connection};
/// use tokio::sync::mpsc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut a, mut b) = tokio::io::duplex(64 * 1024);
/// let limit = Duration::from_secs(5);
/// let (na, nb) = tokio::join!(
///     perform_handshake(&mut a, Hello::new(ProcId::new("a", 1), 1), limit),
///     perform_handshake(&mut b, Hello::new(ProcId::new("b", 1), 2), limit),
/// );
/// let a = spawn_connection(a, na?, ConnectionConfig::default(), |_| {})?;
///
/// // The inbound handler must not block: it only queues what arrives.
/// let (tx, mut rx) = mpsc::unbounded_channel();
/// let b = spawn_connection(b, nb?, ConnectionConfig::default(), move |envelope| {
///     let _ = tx.send(envelope);
/// })?;
/// tokio::spawn(async move {
///     while let Some(request) = rx.recv().await {
///         let Some(id) = request.kind.request_id() else { continue };
///         let answer = EnvelopeKind::Response { id, outcome: Outcome::Ok, is_last: true };
///         let _ = b.send(NetworkEnvelope::control(answer)).await;
///     }
/// });
///
/// let question = NetworkEnvelope::control(EnvelopeKind::Regular);
/// let response = a.request(question, limit).await?;
/// assert!(matches!(response.kind, EnvelopeKind::Response { outcome: Outcome::Ok, .. }));
/// # Ok(())
/// # }
/// ```
///
/// # Panics
///
/// Outside a Tokio runtime, as it spawns tasks.
pub fn spawn_connection<S>(
    stream: S,
    negotiated: Negotiated,
    config: ConnectionConfig,
    inbound: impl Inbound,
) -> Result<ConnectionHandle, ConnectionConfigError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if negotiated.local_flow.is_some() {
        return Err(ConnectionConfigError::FlowTargetMissing);
    }
    spawn_inner(stream, negotiated, config, Box::new(inbound), None)
}

/// Starts the worker of a connection with flow control on its receiving end (design
/// 3.4): like [`spawn_connection`], except that flow-controlled envelopes (tells and
/// requests to an actor or a group) go to `target` through a [`FlowReceiver`], which
/// queues them per flow while their recipient is full and grants their credit back to
/// the peer as `target` takes them. Everything else still goes to `inbound`.
///
/// The local hello of the handshake must have announced the window with
/// [`Hello::with_flow`]: it is the one the peer spends against. Fails with
/// [`ConnectionConfigError::FlowNotAnnounced`] otherwise.
///
/// The sending end needs nothing: whenever the peer announced a window, tells and
/// requests spend its credit before they are queued ([`ConnectionHandle::send`] waits
/// for it, [`ConnectionHandle::try_send`] fails without it).
///
/// [`FlowReceiver`]: crate::FlowReceiver
/// [`Hello::with_flow`]: crate::Hello::with_flow
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
/// use plexus_core::{ActorId, ProcId};
/// use plexus_transport::{
///     ConnectionConfig, FlowConfig, FlowTarget, Hello, Refused, Room, perform_handshake,
///     spawn_connection, spawn_connection_with_flow,
/// };
/// use tokio::sync::mpsc;
///
/// /// One local recipient with a bounded mailbox.
/// struct Mailbox(mpsc::Sender<NetworkEnvelope>);
///
/// impl FlowTarget for Mailbox {
///     fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
///         self.0.try_send(envelope).map_err(|error| match error {
///             mpsc::error::TrySendError::Full(envelope) => Refused::Full(envelope),
///             mpsc::error::TrySendError::Closed(envelope) => Refused::Gone(envelope),
///         })
///     }
///
///     async fn wait_for_room(&self, _recipient: &Recipient) -> Room {
///         match self.0.reserve().await {
///             Ok(_permit) => Room::Available,
///             Err(_) => Room::Gone,
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut a, mut b) = tokio::io::duplex(64 * 1024);
/// let limit = Duration::from_secs(5);
/// let window = FlowConfig { window_messages: 4, ..FlowConfig::default() };
/// let (na, nb) = tokio::join!(
///     perform_handshake(&mut a, Hello::new(ProcId::new("a", 1), 1), limit),
///     perform_handshake(&mut b, Hello::new(ProcId::new("b", 1), 2).with_flow(window), limit),
/// );
/// let a = spawn_connection(a, na?, ConnectionConfig::default(), |_| {})?;
/// let (mailbox, mut taken) = mpsc::channel(1);
/// let _b = spawn_connection_with_flow(
///     b, nb?, ConnectionConfig::default(), |_| {}, Arc::new(Mailbox(mailbox)),
/// )?;
///
/// // Nobody reads the mailbox: four tells use up the window, the fifth finds no credit.
/// let to = Recipient::Actor(ActorId::new(ProcId::new("b", 1), "sink", 0));
/// let tell = NetworkEnvelope { recipient: to, ..NetworkEnvelope::control(EnvelopeKind::Regular) };
/// for _ in 0..4 {
///     a.try_send(tell.clone())?;
/// }
/// assert!(a.try_send(tell.clone()).unwrap_err().is_no_credit());
/// // Taking them grants the credit back.
/// for _ in 0..4 {
///     taken.recv().await;
/// }
/// a.send(tell).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Panics
///
/// Outside a Tokio runtime, as it spawns tasks.
pub fn spawn_connection_with_flow<S, T>(
    stream: S,
    negotiated: Negotiated,
    config: ConnectionConfig,
    inbound: impl Inbound,
    target: Arc<T>,
) -> Result<ConnectionHandle, ConnectionConfigError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    T: FlowTarget,
{
    let Some(window) = negotiated.local_flow.clone() else {
        return Err(ConnectionConfigError::FlowNotAnnounced);
    };
    window.validate()?;
    let receiver: FlowSetup =
        Box::new(move |from, control| flow::receiver(window, target, from, control));
    spawn_inner(
        stream,
        negotiated,
        config,
        Box::new(inbound),
        Some(receiver),
    )
}

/// Makes the flow receiver of a connection once its reference and control lane exist.
type FlowSetup = Box<dyn FnOnce(ConnectionRef, control::ControlLane) -> Box<dyn flow::FlowIn>>;

/// The one place connections are started.
fn spawn_inner<S>(
    stream: S,
    negotiated: Negotiated,
    config: ConnectionConfig,
    inbound: Box<dyn Inbound>,
    flow_setup: Option<FlowSetup>,
) -> Result<ConnectionHandle, ConnectionConfigError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    config.validate()?;
    let (read, write) = crate::wire::split_stream(stream);
    let (queue_tx, queue_rx) = mpsc::channel(config.queue_capacity);
    let (control_tx, control_rx) = control::control_lane();
    let (closed_tx, closed_rx) = watch::channel(None);
    let outbox = Arc::new(outbox::Outbox::new(
        write,
        FrameEncoder::new(negotiated.codec_config(&config.codec)),
    ));
    let shared = Arc::new(Shared::new(
        &negotiated,
        closed_rx,
        Some(Arc::clone(&outbox)),
    ));
    tracing::info!(
        peer = %negotiated.peer,
        peer_launch_id = negotiated.peer_launch_id,
        version = negotiated.version,
        capabilities = ?negotiated.capabilities,
        flow_in = negotiated.local_flow.is_some(),
        flow_out = negotiated.peer_flow.is_some(),
        "connection opened"
    );

    let writer = writer::Writer {
        outbox,
        queue: queue_rx,
        control: control_rx,
        ping_interval: config.ping_interval,
        shared: Arc::clone(&shared),
    };
    let handle = ConnectionHandle {
        queue: queue_tx,
        shared,
    };
    let flow = flow_setup.map(|setup| setup(handle.downgrade(), control_tx.clone()));
    let reader = reader::Reader {
        from: handle.downgrade(),
        read,
        decoder: FrameDecoder::new(CodecConfig {
            capabilities: negotiated.codec_config(&config.codec).capabilities,
            ..config.codec.clone()
        }),
        control: control_tx,
        inbound,
        flow,
        idle_timeout: config.idle_timeout,
        read_buffer: config.read_buffer,
        flush_interval: config.ping_interval,
        shared: handle.shared.clone(),
    };
    let writer = tokio::spawn(writer.run());
    let reader = tokio::spawn(reader.run());
    tokio::spawn(supervise(reader, writer, handle.shared.clone(), closed_tx));
    Ok(handle)
}

pub(crate) use inproc::{End, inproc_pair};

/// Ends the connection when the first of its tasks ends, and tells everyone why.
async fn supervise(
    mut reader: tokio::task::JoinHandle<ConnectionError>,
    mut writer: tokio::task::JoinHandle<Result<(), ConnectionError>>,
    shared: Arc<Shared>,
    closed: watch::Sender<Option<ConnectionError>>,
) {
    let reason = tokio::select! {
        ended = &mut reader => ended.unwrap_or_else(task_failed),
        ended = &mut writer => match ended {
            Ok(Ok(())) if shared.draining.load(Ordering::Acquire) => {
                // Our side is written out; what the peer still sends is read until its
                // end of stream, which the idle timeout bounds.
                tokio::select! {
                    ended = &mut reader => match ended {
                        Ok(ConnectionError::PeerClosed) => ConnectionError::ClosedLocally,
                        Ok(error) => error,
                        Err(error) => task_failed(error),
                    },
                    () = shared.close.notified() => ConnectionError::ClosedLocally,
                }
            }
            Ok(Ok(())) => ConnectionError::ClosedLocally,
            Ok(Err(error)) => error,
            Err(error) => task_failed(error),
        },
        () = shared.close.notified() => ConnectionError::ClosedLocally,
    };
    // Aborting drops the reading half and closing the outbox the writing half, which
    // closes the stream, so the peer notices at once.
    reader.abort();
    writer.abort();
    if let Some(outbox) = &shared.outbox {
        outbox.close();
    }
    let failed = shared.requests.fail_in_flight();
    if let Some(flows) = &shared.send_flows {
        // Wakes every send waiting for credit: it fails with `Closed`.
        flows.close_all();
    }
    tracing::info!(
        peer = %shared.peer.peer,
        reason = %reason,
        failed_requests = failed,
        "connection closed"
    );
    let _ = closed.send(Some(reason));
}

fn task_failed(error: tokio::task::JoinError) -> ConnectionError {
    ConnectionError::TaskFailed {
        reason: error.to_string(),
    }
}
