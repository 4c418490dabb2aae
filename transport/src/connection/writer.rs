//! The writer task: batches queued envelopes into frames and writes them out.
//!
//! It waits for one envelope (or a ping tick, or work a direct write left behind), then
//! takes whatever else is already queued without waiting, in batches, writing whenever
//! the encoder advises a flush and once more when the queue is empty. Waiting for more
//! would add latency to a lone send; taking only what is there already gives large
//! batches exactly when sends arrive faster than the stream drains.
//!
//! The encoder and the stream live in the connection's outbox (module `outbox`), which
//! idle sends also write to directly; the writer touches them only under its lock.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use plexus_codec::{EnvelopeKind, FrameState, NetworkEnvelope};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::control::ControlReceiver;
use super::outbox::Outbox;
use super::{ConnectionError, Shared};

/// How many queued envelopes the writer takes from the queue at once.
const BATCH: usize = 256;

pub(super) struct Writer {
    pub(super) outbox: Arc<Outbox>,
    /// Envelopes from [`ConnectionHandle::send`](super::ConnectionHandle::send).
    pub(super) queue: mpsc::Receiver<NetworkEnvelope>,
    /// The reader's own replies and flow credit; taken before the queue so pongs are not
    /// delayed by a backlog of messages (that would inflate the peer's round-trip time)
    /// and credit reaches waiting senders as soon as possible.
    pub(super) control: ControlReceiver,
    pub(super) ping_interval: Duration,
    pub(super) shared: Arc<Shared>,
}

/// What woke the writer.
enum Woken {
    /// A control envelope to encode.
    Control(NetworkEnvelope),
    /// Envelopes taken from the queue into the batch, or work a direct write left.
    Work,
    /// The queue is closed and empty.
    Ended,
}

impl Writer {
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
            let woken = tokio::select! {
                biased;
                Some(envelope) = self.control.credit.recv() => Woken::Control(envelope),
                Some(envelope) = self.control.replies.recv() => Woken::Control(envelope),
                woken = poll_fn(|cx| poll_queue(&self.outbox, &mut self.queue, cx, &mut batch)) => woken,
                () = &mut drain, if !draining => {
                    // Refuse new sends; the queue then yields what is queued, then ends.
                    draining = true;
                    self.queue.close();
                    continue;
                }
                _ = ping.tick() => {
                    if let Some(flows) = &self.shared.send_flows {
                        // Bounds the table to the flows in use; see `SendFlows::forget_idle`.
                        flows.forget_idle();
                    }
                    Woken::Control(self.ping())
                }
            };
            match woken {
                Woken::Control(envelope) => {
                    self.outbox.lock().encode(&envelope, &self.shared);
                }
                Woken::Work => {}
                Woken::Ended => break,
            }
            self.write_available(&mut batch).await?;
        }
        // Every handle is gone: let the peer see a clean end of stream.
        self.write_out().await?;
        poll_fn(|cx| self.outbox.lock().poll_shutdown(cx)).await?;
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
            let (advised, more) = self.encode_available(batch);
            if advised || !more {
                self.write_out().await?;
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Encodes the control lane and `batch` (refilled from the queue when empty) until
    /// the encoder advises a flush. Returns whether it did, and whether anything was
    /// encoded.
    fn encode_available(&mut self, batch: &mut Vec<NetworkEnvelope>) -> (bool, bool) {
        let mut outbox = self.outbox.lock();
        let mut advised = false;
        let mut encoded = false;
        while let Some(envelope) = self.control.try_recv() {
            encoded = true;
            advised |= outbox.encode(&envelope, &self.shared) == FrameState::FlushAdvised;
        }
        if batch.is_empty() {
            let mut cx = Context::from_waker(Waker::noop());
            // `Ready(0)` (closed) is found out by the next wait in `run`.
            let _ = self.queue.poll_recv_many(&mut cx, batch, BATCH);
        }
        let mut used = 0;
        while used < batch.len() && !advised {
            encoded = true;
            advised = outbox.encode(&batch[used], &self.shared) == FrameState::FlushAdvised;
            used += 1;
        }
        batch.drain(..used);
        outbox.held = !batch.is_empty();
        (advised, encoded)
    }

    /// Writes out what the outbox holds.
    async fn write_out(&self) -> Result<(), ConnectionError> {
        poll_fn(|cx| self.outbox.lock().poll_write_out(cx, &self.shared)).await?;
        Ok(())
    }

    fn ping(&self) -> NetworkEnvelope {
        // The nonce is our own send time, so the pong alone gives the round trip.
        let nonce = u64::try_from(self.shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        NetworkEnvelope::control(EnvelopeKind::Ping { nonce })
    }
}

/// Waits for queued envelopes (taken into `batch` under the outbox's lock, so a
/// direct write sees them as held) or for work a direct write left behind.
fn poll_queue(
    outbox: &Outbox,
    queue: &mut mpsc::Receiver<NetworkEnvelope>,
    cx: &mut Context<'_>,
    batch: &mut Vec<NetworkEnvelope>,
) -> Poll<Woken> {
    let mut outbox = outbox.lock();
    if outbox.has_work() {
        return Poll::Ready(Woken::Work);
    }
    match queue.poll_recv_many(cx, batch, BATCH) {
        Poll::Ready(0) => Poll::Ready(Woken::Ended),
        Poll::Ready(_) => {
            outbox.held = true;
            Poll::Ready(Woken::Work)
        }
        Poll::Pending => {
            outbox.set_writer(cx.waker());
            Poll::Pending
        }
    }
}
