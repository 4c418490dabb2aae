//! The outbox of a connection: its frame encoder and the writing half of its stream,
//! shared by the writer task and by senders that write their own envelope.
//!
//! A send that finds the connection idle (nothing queued, held, encoded or unwritten)
//! encodes and writes its envelope on its own task: a lone ask or its reply then skips
//! the hand-off to the writer task, a wake-up of another task (often on another thread)
//! that cost more than the write itself. Under load the queue is not empty, so sends
//! queue and the writer batches them as before.
//!
//! Order: every byte the encoder produces is written under the outbox's lock, in order,
//! what is `unwritten` first; the writer takes envelopes from the queue only under the
//! lock and records those it holds (`held`); a sender writes directly only when the queue
//! is empty and the outbox idle. So no envelope overtakes one whose send had completed.
//!
//! A direct write is allowed once per read of the stream (`allow_direct`), so a sender
//! that only sends does not turn every envelope into a write of its own: its sends queue
//! behind the first and the writer batches them. A request and its response, each sent
//! after the stream brought something, go directly.
//!
//! ```text
//! send ──idle and allowed──▶ encode + write on the sender's task ──Pending──▶ writer
//!   └──otherwise──▶ queue ──▶ writer (under the lock) ──▶ encode + write
//! ```

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use plexus_codec::{EnvelopeKind, FrameEncoder, FrameState, NetworkEnvelope};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use super::Shared;
use crate::RequestError;
use crate::wire::WriteHalf;

/// The encoder and the stream's writing half of one connection.
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    /// Whether the next idle send may write directly; set by each read of the stream.
    direct: AtomicBool,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

/// What the lock guards.
pub(super) struct OutboxState {
    /// `None` once the connection has ended.
    write: Option<WriteHalf>,
    encoder: FrameEncoder,
    /// Encoded bytes the stream has not taken yet; written before anything else.
    unwritten: Bytes,
    /// Whether the writer holds envelopes taken from the queue but not encoded yet.
    pub(super) held: bool,
    /// A failed direct write, for the writer task to end the connection with.
    failed: Option<io::Error>,
    /// The writer task, woken when a direct write leaves work behind.
    writer: Option<Waker>,
}

impl Outbox {
    /// An outbox over `write`, encoding with `encoder`.
    pub(super) fn new(write: WriteHalf, encoder: FrameEncoder) -> Self {
        Outbox {
            state: Mutex::new(OutboxState {
                write: Some(write),
                encoder,
                unwritten: Bytes::new(),
                held: false,
                failed: None,
                writer: None,
            }),
            direct: AtomicBool::new(true),
        }
    }

    /// Locks the outbox. Never held across an await.
    pub(super) fn lock(&self) -> MutexGuard<'_, OutboxState> {
        // Every field stays consistent between statements: a panicking holder leaves
        // nothing half-done that the next one could misread.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets the next idle send write directly: the stream just brought something, which
    /// a reply or the next request usually follows.
    pub(super) fn allow_direct(&self) {
        if !self.direct.load(Ordering::Relaxed) {
            self.direct.store(true, Ordering::Relaxed);
        }
    }

    /// Encodes and writes `envelope` on the caller's task if the connection is idle and
    /// nothing is queued on `queue`; `false` otherwise, when it is to be queued.
    pub(super) fn try_write(
        &self,
        envelope: &NetworkEnvelope,
        queue: &mpsc::Sender<NetworkEnvelope>,
        shared: &Shared,
    ) -> bool {
        if !self.direct.load(Ordering::Relaxed) {
            return false;
        }
        // Busy means the writer (or another sender) is at it: queue behind it.
        let Ok(mut state) = self.state.try_lock() else {
            return false;
        };
        // Under the lock, as the writer takes from the queue only under it: an empty
        // queue here means every envelope sent before is encoded already.
        let idle = state.write.is_some()
            && !state.held
            && state.failed.is_none()
            && state.unwritten.is_empty()
            && state.encoder.is_empty()
            && !queue.is_closed()
            && queue.capacity() == queue.max_capacity();
        if !idle {
            return false;
        }
        self.direct.store(false, Ordering::Relaxed);
        state.encode(envelope, shared);
        let mut cx = Context::from_waker(Waker::noop());
        match state.poll_write_out(&mut cx, shared) {
            Poll::Ready(Ok(())) => {}
            // The stream is full: the writer finishes with its own waker.
            Poll::Pending => state.wake_writer(),
            Poll::Ready(Err(error)) => {
                state.failed = Some(error);
                state.wake_writer();
            }
        }
        true
    }

    /// Drops the writing half, so the peer sees the connection end, and refuses direct
    /// writes from now on.
    pub(super) fn close(&self) {
        let write = self.lock().write.take();
        drop(write);
    }
}

impl OutboxState {
    /// Encodes one envelope. One that cannot be encoded is dropped (its request fails);
    /// the connection goes on, since nothing was written for it.
    pub(super) fn encode(&mut self, envelope: &NetworkEnvelope, shared: &Shared) -> FrameState {
        match self.encoder.push(envelope) {
            Ok(state) => {
                shared.envelopes_sent.fetch_add(1, Ordering::Relaxed);
                state
            }
            Err(error) => {
                tracing::warn!(
                    kind = %envelope.kind,
                    name = %&*envelope.name,
                    error = %error,
                    "dropping an envelope that does not encode"
                );
                if let EnvelopeKind::Request { id } = envelope.kind {
                    shared.requests.fail(
                        id,
                        RequestError::Encode {
                            id,
                            reason: error.to_string(),
                        },
                    );
                }
                FrameState::Buffered
            }
        }
    }

    /// Whether a direct write left work for the writer task.
    pub(super) fn has_work(&self) -> bool {
        self.failed.is_some() || !self.unwritten.is_empty() || !self.encoder.is_empty()
    }

    /// Remembers the writer task's waker, for a direct write that leaves work behind.
    pub(super) fn set_writer(&mut self, waker: &Waker) {
        match &self.writer {
            Some(known) if known.will_wake(waker) => {}
            _ => self.writer = Some(waker.clone()),
        }
    }

    fn wake_writer(&self) {
        if let Some(writer) = &self.writer {
            writer.wake_by_ref();
        }
    }

    /// Writes what is unwritten, then what the encoder holds, and flushes. `Pending` when
    /// the stream is full; what it did not take stays unwritten.
    pub(super) fn poll_write_out(
        &mut self,
        cx: &mut Context<'_>,
        shared: &Shared,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Err(error));
        }
        let Some(write) = self.write.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        loop {
            if self.unwritten.is_empty() {
                if self.encoder.is_empty() {
                    break;
                }
                self.unwritten = self.encoder.finish();
                shared.writes.fetch_add(1, Ordering::Relaxed);
            }
            match Pin::new(&mut *write).poll_write(cx, &self.unwritten) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) if n >= self.unwritten.len() => {
                    // Let go of the encoder's buffer at once: it reuses the allocation
                    // only when nothing else refers to it, and even an empty slice does.
                    self.unwritten = Bytes::new();
                }
                Poll::Ready(Ok(n)) => self.unwritten.advance(n),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(write).poll_flush(cx)
    }

    /// Ends the writing direction of the stream once everything is written.
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.write.as_mut() {
            Some(write) => Pin::new(write).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}
