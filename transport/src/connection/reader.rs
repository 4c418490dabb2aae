//! The reader task: decodes what arrives and hands each envelope on without waiting.
//!
//! Nothing here awaits anything but the stream: envelopes go to the synchronous
//! [`Inbound`] handler, replies to the writer through the control lane, responses to
//! their request slots. See the architecture invariant in the [parent module](super).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use plexus_codec::{Decoded, EnvelopeKind, FrameDecoder, NetworkEnvelope, Skipped};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::control::ControlLane;
use super::flow::{FlowIn, failed_response, flow_of_skipped};
use super::{ConnectionError, ConnectionRef, Inbound, Shared};
use crate::RequestError;
use crate::flow::Received;

pub(super) struct Reader<R> {
    pub(super) read: R,
    pub(super) decoder: FrameDecoder,
    /// Replies of the reader itself, to the writer.
    pub(super) control: ControlLane,
    pub(super) inbound: Box<dyn Inbound>,
    /// This connection, weakly, for the inbound handler to answer on.
    pub(super) from: ConnectionRef,
    /// The receiving end of flow control, when this side announced a window.
    pub(super) flow: Option<Box<dyn FlowIn>>,
    /// How often idle flows give their credit back (the ping interval).
    pub(super) flush_interval: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) read_buffer: usize,
    pub(super) shared: Arc<Shared>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Runs until the stream ends, fails, idles out or carries a malformed frame.
    ///
    /// The two timers live across reads: creating a timeout per read registered and
    /// removed a timer entry (a lock in the time driver) on every wake-up, which an
    /// ask pays on both ends. The idle timer fires at most once per idle timeout and
    /// is then moved to `idle_timeout` after the last read.
    pub(super) async fn run(mut self) -> ConnectionError {
        let mut buf = vec![0u8; self.read_buffer];
        let mut last_read = Instant::now();
        let idle = tokio::time::sleep_until(last_read + self.idle_timeout);
        let flush = tokio::time::sleep_until(last_read + self.flush_interval);
        tokio::pin!(idle, flush);
        loop {
            // Reading is cancel safe, so either timer may interrupt it. The read comes
            // first: a busy connection then polls no timer at all, and the flush deadline
            // is checked after each read instead, so a stream that always has data still
            // gives its credit back on time (and cannot be idle).
            let read = tokio::select! {
                biased;
                read = self.read.read(&mut buf) => read,
                () = &mut flush, if self.flow.is_some() => {
                    self.flush_idle(flush.as_mut());
                    continue;
                }
                () = &mut idle => {
                    let deadline = last_read + self.idle_timeout;
                    if Instant::now() >= deadline {
                        return ConnectionError::IdleTimeout {
                            idle: self.idle_timeout,
                        };
                    }
                    idle.as_mut().reset(deadline);
                    continue;
                }
            };
            let n = match read {
                Err(error) => return error.into(),
                Ok(0) => {
                    return match self.decoder.end_of_stream() {
                        Ok(()) => ConnectionError::PeerClosed,
                        Err(error) => ConnectionError::Malformed(error),
                    };
                }
                Ok(n) => n,
            };
            last_read = Instant::now();
            if let Some(outbox) = &self.shared.outbox {
                outbox.allow_direct();
            }
            if let Err(error) = self.decode(&buf[..n]) {
                return error;
            }
            if self.flow.is_some() && last_read >= flush.deadline() {
                self.flush_idle(flush.as_mut());
            }
        }
    }

    /// Gives idle flows' credit back and sets the next flush.
    fn flush_idle(&self, flush: std::pin::Pin<&mut tokio::time::Sleep>) {
        if let Some(flow) = &self.flow {
            flow.flush_idle();
        }
        flush.reset(Instant::now() + self.flush_interval);
    }

    /// Feeds `input` to the decoder and handles every envelope it completes.
    fn decode(&mut self, input: &[u8]) -> Result<(), ConnectionError> {
        // Counted once per read rather than once per envelope: one shared atomic update
        // instead of dozens.
        let mut received = 0;
        let result = self.decode_counting(input, &mut received);
        self.shared
            .envelopes_received
            .fetch_add(received, Ordering::Relaxed);
        result
    }

    fn decode_counting(
        &mut self,
        mut input: &[u8],
        received: &mut u64,
    ) -> Result<(), ConnectionError> {
        loop {
            // `feed` takes nothing while a decoded frame waits, so drain before feeding.
            loop {
                match self.decoder.next() {
                    Ok(Some(Decoded::Envelope(envelope))) => {
                        *received += 1;
                        self.handle(envelope)?;
                    }
                    Ok(Some(Decoded::Skipped(skipped))) => {
                        *received += 1;
                        self.handle_skipped(skipped)?;
                    }
                    Ok(None) => break,
                    Err(error) => return Err(ConnectionError::Malformed(error)),
                }
            }
            if input.is_empty() {
                return Ok(());
            }
            let used = self.decoder.feed(input);
            input = &input[used..];
        }
    }

    fn handle(&mut self, envelope: NetworkEnvelope) -> Result<(), ConnectionError> {
        match envelope.kind {
            EnvelopeKind::Credit { .. } | EnvelopeKind::FlowClose { .. } => {
                match &self.shared.send_flows {
                    Some(flows) => {
                        flows.handle_control(&envelope);
                    }
                    None => {
                        tracing::debug!(peer = %self.shared.peer.peer, "flow credit without flow control ignored");
                    }
                }
            }
            EnvelopeKind::Ping { nonce } => {
                self.reply(NetworkEnvelope::control(EnvelopeKind::Pong { nonce }));
            }
            EnvelopeKind::Pong { nonce } => {
                // The nonce is the writer's send time; a forged one only skews the figure.
                let now = u64::try_from(self.shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let rtt = now.saturating_sub(nonce).max(1);
                self.shared.rtt_nanos.store(rtt, Ordering::Relaxed);
                tracing::trace!(rtt_ns = rtt, "pong received");
            }
            EnvelopeKind::Response { .. } => {
                if let Some(envelope) = self.shared.requests.resolve(envelope) {
                    self.inbound.deliver_from(envelope, &self.from);
                }
            }
            _ => match &self.flow {
                None => self.inbound.deliver_from(envelope, &self.from),
                Some(flow) => match flow.receive(envelope) {
                    Ok(Received::NotFlowControlled(envelope)) => {
                        self.inbound.deliver_from(envelope, &self.from);
                    }
                    Ok(Received::Delivered | Received::Queued | Received::Undeliverable) => {}
                    // The ends no longer agree on the window: end the connection.
                    Err(error) => return Err(ConnectionError::Flow(error)),
                },
            },
        }
        Ok(())
    }

    /// Logs an envelope that did not decode and makes sure nobody waits for it: a request
    /// is answered `Failed`, a response fails its request.
    fn handle_skipped(&mut self, skipped: Skipped) -> Result<(), ConnectionError> {
        tracing::warn!(
            peer = %self.shared.peer.peer,
            kind = %skipped.kind,
            request_id = ?skipped.request_id,
            reason = %skipped.reason,
            "skipping an envelope that does not decode"
        );
        match skipped.kind {
            EnvelopeKind::Request { id } | EnvelopeKind::RequestAll { id } => {
                self.reply(failed_response(
                    id,
                    skipped.sender.clone(),
                    skipped.trace_id,
                ));
            }
            EnvelopeKind::Response { id, .. } => {
                self.shared.requests.fail(id, RequestError::Failed { id });
            }
            _ => {}
        }
        // The peer spent credit on it: give it back, as if it had been consumed.
        if let (Some(flow), Some(skipped_flow)) = (&self.flow, flow_of_skipped(&skipped)) {
            let bytes = u64::try_from(skipped.payload_len).unwrap_or(u64::MAX);
            flow.skipped(&skipped_flow, bytes)
                .map_err(ConnectionError::Flow)?;
        }
        self.inbound.skipped(&skipped);
        Ok(())
    }

    fn reply(&self, envelope: NetworkEnvelope) {
        self.control.send(envelope);
    }
}
