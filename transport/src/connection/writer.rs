//! The writer task: batches queued envelopes into frames and writes them out.
//!
//! It waits for one envelope (or a ping tick), then takes whatever else is already queued
//! without waiting, until the queue is empty or the encoder advises a flush, and writes the
//! batch with one `write_all`. Waiting for more would add latency to a lone send; taking
//! only what is there already gives large batches exactly when sends arrive faster than
//! the stream drains.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use plexus_codec::{EnvelopeKind, FrameEncoder, FrameState, NetworkEnvelope};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::control::ControlReceiver;
use super::{ConnectionError, Shared};
use crate::RequestError;

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
        loop {
            let first = tokio::select! {
                biased;
                Some(envelope) = self.control.credit.recv() => envelope,
                Some(envelope) = self.control.replies.recv() => envelope,
                envelope = self.queue.recv() => match envelope {
                    Some(envelope) => envelope,
                    None => break,
                },
                () = self.shared.drain.notified() => {
                    // Refuse new sends; `recv` then yields what is queued, then `None`.
                    self.queue.close();
                    continue;
                }
                _ = ping.tick() => {
                    if let Some(flows) = &self.shared.send_flows {
                        // Bounds the table to the flows in use; see `SendFlows::forget_idle`.
                        flows.forget_idle();
                    }
                    self.ping()
                }
            };
            let mut state = self.push(&first);
            while state == FrameState::Buffered {
                let next = match self.control.try_recv() {
                    Some(envelope) => envelope,
                    None => match self.queue.try_recv() {
                        Ok(envelope) => envelope,
                        Err(_) => break,
                    },
                };
                state = self.push(&next);
            }
            self.write_batch().await?;
        }
        // Every handle is gone: let the peer see a clean end of stream.
        self.write_batch().await?;
        self.write.shutdown().await?;
        Ok(())
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
