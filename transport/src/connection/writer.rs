//! The writer task: batches queued envelopes into frames and writes them out.
//!
//! It waits for one envelope (or a ping tick), then takes whatever else is already queued
//! without waiting, in batches, writing whenever the encoder advises a flush and once more
//! when the queue is empty. Waiting for more would add latency to a lone send; taking
//! only what is there already gives large batches exactly when sends arrive faster than
//! the stream drains.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use plexus_codec::{EnvelopeKind, FrameEncoder, FrameState, NetworkEnvelope};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::control::ControlReceiver;
use super::{ConnectionError, Shared};
use crate::RequestError;

/// How many queued envelopes the writer takes from the queue at once.
const BATCH: usize = 256;

pub(super) struct Writer<W> {
    pub(super) write: W,
    pub(super) encoder: FrameEncoder,
    /// Envelopes from [`ConnectionHandle::send`](super::ConnectionHandle::send).
    pub(super) queue: mpsc::Receiver<NetworkEnvelope>,
    /// The reader's own replies and flow credit; taken before the queue so pongs are not
    /// delayed by a backlog of messages (that would inflate the peer's round-trip time)
    /// and credit reaches waiting senders as soon as possible.
    pub(super) control: ControlReceiver,
    pub(super) ping_interval: Duration,
    pub(super) shared: Arc<Shared>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// Runs until every handle is dropped (`Ok`) or the stream fails.
    pub(super) async fn run(mut self) -> Result<(), ConnectionError> {
        let mut ping =
            tokio::time::interval_at(Instant::now() + self.ping_interval, self.ping_interval);
        // After a stall, one ping is enough; a burst of them would measure nothing.
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        // One waiter for the whole life of the writer: a new `notified()` per wake-up
        // took the notify's lock twice (to join its waiters and to leave them).
        let shared = Arc::clone(&self.shared);
        let drain = shared.drain.notified();
        tokio::pin!(drain);
        let mut draining = false;
        loop {
            let first = tokio::select! {
                biased;
                Some(envelope) = self.control.credit.recv() => Some(envelope),
                Some(envelope) = self.control.replies.recv() => Some(envelope),
                taken = self.queue.recv_many(&mut batch, BATCH) => {
                    if taken == 0 {
                        break;
                    }
                    None
                }
                () = &mut drain, if !draining => {
                    // Refuse new sends; `recv_many` then yields what is queued, then 0.
                    draining = true;
                    self.queue.close();
                    continue;
                }
                _ = ping.tick() => {
                    if let Some(flows) = &self.shared.send_flows {
                        // Bounds the table to the flows in use; see `SendFlows::forget_idle`.
                        flows.forget_idle();
                    }
                    Some(self.ping())
                }
            };
            if let Some(envelope) = first {
                self.push(&envelope);
            }
            self.write_available(&mut batch).await?;
        }
        // Every handle is gone: let the peer see a clean end of stream.
        self.write_batch().await?;
        self.write.shutdown().await?;
        Ok(())
    }

    /// Encodes `batch` and whatever else is queued now, control first, writing whenever
    /// the encoder advises it and once more when nothing is left.
    ///
    /// The queue is taken [`BATCH`] envelopes at a time: one lock of the channel's
    /// semaphore per batch instead of one per envelope, and the control lane is looked at
    /// between batches, so a pong or a grant waits behind at most one batch.
    async fn write_available(
        &mut self,
        batch: &mut Vec<NetworkEnvelope>,
    ) -> Result<(), ConnectionError> {
        loop {
            while let Some(envelope) = self.control.try_recv() {
                if self.push(&envelope) == FrameState::FlushAdvised {
                    self.write_batch().await?;
                }
            }
            if batch.is_empty() && !self.take_queued(batch) {
                break;
            }
            for envelope in batch.drain(..) {
                if self.push(&envelope) == FrameState::FlushAdvised {
                    self.write_batch().await?;
                }
            }
        }
        self.write_batch().await
    }

    /// Moves what the queue holds now into `batch` without waiting; `false` when it
    /// holds nothing (or is closed, which the next wait in `run` finds out).
    fn take_queued(&mut self, batch: &mut Vec<NetworkEnvelope>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            self.queue.poll_recv_many(&mut cx, batch, BATCH),
            Poll::Ready(taken) if taken > 0
        )
    }

    fn ping(&self) -> NetworkEnvelope {
        // The nonce is our own send time, so the pong alone gives the round trip.
        let nonce = u64::try_from(self.shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        NetworkEnvelope::control(EnvelopeKind::Ping { nonce })
    }

    /// Encodes one envelope. One that cannot be encoded is dropped (its request fails);
    /// the connection goes on, since nothing was written for it.
    fn push(&mut self, envelope: &NetworkEnvelope) -> FrameState {
        match self.encoder.push(envelope) {
            Ok(state) => {
                self.shared.envelopes_sent.fetch_add(1, Ordering::Relaxed);
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
                    self.shared.requests.fail(
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

    async fn write_batch(&mut self) -> Result<(), ConnectionError> {
        let bytes = self.encoder.finish();
        if bytes.is_empty() {
            return Ok(());
        }
        self.write.write_all(&bytes).await?;
        self.write.flush().await?;
        self.shared.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
