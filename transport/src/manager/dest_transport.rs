//! The connections to one destination and the policy that picks one per envelope.
//!
//! A [`DestTransport`] holds one connection per wire to its [`Dest`], each after its
//! handshake. Every connection is watched by a task that marks its wire failed the
//! moment the connection ends, so a dead wire is skipped by the next send instead of
//! being found out by a send that fails.
//!
//! The wire of each envelope is chosen by the [send policy](DestTransport#send-policy).
//! A sender of many envelopes of one pair picks the wire once with
//! [`DestTransport::pair_sender`] and queues on it without a future while the
//! connection has credit and room, falling back to [`DestTransport::send_or_return`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use foldhash::fast::FixedState;
use plexus_codec::NetworkEnvelope;

use super::TransportError;
use crate::{ConnectionHandle, Dest, SendError, SendWindow, TrySendError};

/// The connections to one [`Dest`], one per wire, and the send policy over them.
///
/// Built by the [`OutprocTransportManager`](super::OutprocTransportManager); get it with
/// [`transport`](super::OutprocTransportManager::transport) to inspect its health.
/// Dropping the last reference closes every connection.
///
/// # Send policy
///
/// Per-pair FIFO (design 3, promise 1) needs every envelope of one (sender, recipient)
/// pair to travel on one wire. The wire is chosen by rendezvous hashing: each healthy
/// wire scores `hash(sender, recipient, wire index)` and the highest score wins. A pair
/// therefore stays on its wire for as long as that wire is healthy, whatever happens to
/// the others (a plain `hash % healthy_count` would move pairs whenever any wire fails).
/// When a pair's wire fails, the pair moves to the best of the remaining wires; what was
/// still queued on the failed wire is lost with it (tells are at-most-once), and what
/// follows arrives in order on the new one.
///
/// A pair that moved is pinned to its fallback wire until that wire fails too, and does
/// not move back when its preferred wire is reconnected: envelopes of the pair still
/// queued on the fallback wire would otherwise be overtaken by the first ones sent on
/// the reconnected wire. Pins cost one map entry per pair that fell back, kept for the
/// life of the transport; while there are none, a send only reads one flag.
pub struct DestTransport {
    dest: Dest,
    wires: Vec<Arc<WireSlot>>,
    /// Set once the transport is lost (every wire failed, closed or dropped), so the
    /// owner hears of the loss exactly once.
    lost: AtomicBool,
    owner: Option<Arc<dyn TransportOwner>>,
    /// Whether this side dialed the connections (rather than adopting one the peer
    /// dialed), for the simultaneous-dial rule.
    dialed: bool,
    /// Set by `retire` and `close_draining`: the connections drain instead of closing on
    /// drop.
    retired: AtomicBool,
    /// This transport, weakly, for the watchers it starts.
    me: Weak<DestTransport>,
    /// Pair hash → the fallback wire the pair moved to. Keyed by a hash already, so the
    /// map hashes it again with foldhash rather than SipHash.
    pins: Mutex<HashMap<u64, usize, FixedState>>,
    /// Whether `pins` is non-empty, so sends skip its lock while no pair fell back.
    pinned: AtomicBool,
}

impl std::fmt::Debug for DestTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestTransport")
            .field("dest", &self.dest)
            .field("wires", &self.wires)
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

/// Who hears about a [`DestTransport`]'s health: the manager that stores it.
pub(crate) trait TransportOwner: Send + Sync + 'static {
    /// Every wire of `transport` has failed. Called from a watcher task, holding no lock.
    fn all_wires_failed(&self, transport: &Arc<DestTransport>);

    /// `dest`'s transport is lost for good; called once per transport. It may be called
    /// from `Drop`, under any lock, so it must not take the manager's table lock.
    fn lost(&self, dest: &Dest);
}

/// One wire's current connection and whether it is usable.
#[derive(Debug)]
struct WireSlot {
    index: usize,
    /// Bumped on every replacement, so the watcher of a replaced connection never marks
    /// its successor failed.
    generation: AtomicU64,
    healthy: AtomicBool,
    connection: Mutex<ConnectionHandle>,
}

impl WireSlot {
    fn locked(&self) -> MutexGuard<'_, ConnectionHandle> {
        // The slot is consistent after every statement, so a poisoned lock is still valid.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn connection(&self) -> ConnectionHandle {
        self.locked().clone()
    }

    /// Healthy by the flag and by the connection itself: the watcher may not have run yet
    /// when the connection has just ended. Borrows the handle rather than cloning it, as
    /// every send checks each wire.
    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && self.locked().close_reason().is_none()
    }

    fn mark_failed(&self, dest: &Dest, reason: &dyn std::fmt::Display) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(%dest, wire = self.index, %reason, "wire failed");
        }
    }
}

impl DestTransport {
    /// Takes one connection per wire and starts watching each; tells `owner` when every
    /// wire has failed and when the transport is lost. Must run inside a tokio runtime.
    pub(crate) fn new(
        dest: Dest,
        connections: Vec<ConnectionHandle>,
        owner: Option<Arc<dyn TransportOwner>>,
        dialed: bool,
    ) -> Arc<Self> {
        let wires: Vec<_> = connections
            .into_iter()
            .enumerate()
            .map(|(index, connection)| {
                Arc::new(WireSlot {
                    index,
                    generation: AtomicU64::new(0),
                    healthy: AtomicBool::new(true),
                    connection: Mutex::new(connection),
                })
            })
            .collect();
        let transport = Arc::new_cyclic(|me| DestTransport {
            dest,
            wires,
            lost: AtomicBool::new(false),
            owner,
            dialed,
            retired: AtomicBool::new(false),
            me: me.clone(),
            pins: Mutex::new(HashMap::with_hasher(PAIR_HASHER)),
            pinned: AtomicBool::new(false),
        });
        // Started once the transport exists, so a watcher always finds it.
        for slot in &transport.wires {
            watch(Arc::downgrade(&transport), slot, 0);
        }
        transport
    }

    /// The destination.
    pub fn dest(&self) -> &Dest {
        &self.dest
    }

    /// How many wires the destination has, healthy or not.
    pub fn wire_count(&self) -> usize {
        self.wires.len()
    }

    /// Whether at least one wire is healthy.
    pub fn is_healthy(&self) -> bool {
        self.wires.iter().any(|slot| slot.is_healthy())
    }

    /// Whether at least one wire is marked healthy, reading flags only: no lock is taken
    /// and no connection asked, so it suits a check on every message. It lags
    /// [`is_healthy`](Self::is_healthy) only until the task watching a connection that
    /// has just ended marks its wire failed.
    pub fn is_marked_healthy(&self) -> bool {
        !self.is_lost()
            && self
                .wires
                .iter()
                .any(|slot| slot.healthy.load(Ordering::Acquire))
    }

    /// The indices of the healthy wires, ascending.
    pub fn healthy_wires(&self) -> Vec<usize> {
        self.wires
            .iter()
            .filter(|slot| slot.is_healthy())
            .map(|slot| slot.index)
            .collect()
    }

    /// The indices of the failed wires, ascending.
    pub fn failed_wires(&self) -> Vec<usize> {
        self.wires
            .iter()
            .filter(|slot| !slot.is_healthy())
            .map(|slot| slot.index)
            .collect()
    }

    /// The wire the envelopes of `envelope`'s (sender, recipient) pair take now, or `None`
    /// when no wire is healthy.
    pub fn wire_for(&self, envelope: &NetworkEnvelope) -> Option<usize> {
        self.choose(pair_hash(envelope), false)
            .map(|slot| slot.index)
    }

    /// Queues `envelope` on its pair's wire (see the [send policy](DestTransport#send-policy)), falling back to
    /// another healthy wire if that one turns out closed.
    ///
    /// Success means the envelope was queued, not that it arrived.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, the envelope was not
    /// queued.
    pub async fn send(&self, envelope: NetworkEnvelope) -> Result<(), TransportError> {
        self.send_or_return(envelope)
            .await
            .map_err(|(error, _)| error)
    }

    /// [`send`](Self::send), handing the envelope back with the error whenever it was not
    /// queued: the caller may try the destination's newer transport (on
    /// [`TransportError::NoHealthyWire`]) or report the envelope, without keeping a copy
    /// of every envelope for failures.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`send`](Self::send).
    pub async fn send_or_return(
        &self,
        mut envelope: NetworkEnvelope,
    ) -> Result<(), (TransportError, NetworkEnvelope)> {
        while let Some(slot) = self.pick(&envelope) {
            match slot.connection().send(envelope).await {
                Ok(()) => return Ok(()),
                Err(SendError::Flow { envelope, error }) => {
                    let error = TransportError::Flow {
                        dest: self.dest.clone(),
                        source: error,
                    };
                    return Err((error, envelope));
                }
                Err(refused) => {
                    slot.mark_failed(&self.dest, &"send found the connection closed");
                    envelope = refused.into_envelope();
                }
            }
        }
        let error = TransportError::NoHealthyWire {
            dest: self.dest.clone(),
        };
        Err((error, envelope))
    }

    /// The wire of `envelope`'s (sender, recipient) pair, picked as
    /// [`send_or_return`](Self::send_or_return) picks it, to queue that pair's envelopes
    /// without a future and without picking again per envelope (see [`PairSender`]).
    /// `None` when no wire is healthy.
    pub fn pair_sender(&self, envelope: &NetworkEnvelope) -> Option<PairSender> {
        let pair = pair_hash(envelope);
        let slot = self.choose(pair, true)?;
        let connection = slot.connection();
        Some(PairSender {
            slot: Arc::clone(slot),
            window: connection.send_window(envelope),
            connection,
            pair,
        })
    }

    /// Sends `envelope` as a request on its pair's wire and waits at most `timeout` for
    /// the response (see [`ConnectionHandle::request`]). A wire found closed before the
    /// request got an id is marked failed and the next healthy wire is tried. If the
    /// connection is lost while the request is in flight, it fails at once with
    /// [`RequestError::Disconnected`](crate::RequestError::Disconnected).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future forgets the request; it may or may not have been sent.
    pub async fn request(
        &self,
        mut envelope: NetworkEnvelope,
        timeout: Duration,
    ) -> Result<NetworkEnvelope, TransportError> {
        while let Some(slot) = self.pick(&envelope) {
            match slot.connection().request_or_return(envelope, timeout).await {
                // Handed back: the connection had ended before the request was registered,
                // so it was never sent and may go on another wire.
                Err((_, Some(returned))) => {
                    slot.mark_failed(&self.dest, &"request found the connection closed");
                    envelope = returned;
                }
                outcome => {
                    return outcome.map_err(|(source, _)| TransportError::Request {
                        dest: self.dest.clone(),
                        source,
                    });
                }
            }
        }
        Err(TransportError::NoHealthyWire {
            dest: self.dest.clone(),
        })
    }

    /// Closes every connection. In-flight requests fail with `Disconnected`, and the
    /// manager's subscribers hear that the destination is lost.
    pub fn close(&self) {
        for slot in &self.wires {
            slot.healthy.store(false, Ordering::Release);
            slot.connection().close();
        }
        tracing::debug!(dest = %self.dest, "destination transport closed");
        self.declare_lost();
    }

    /// Closes every connection after it has written what is queued on it, and reports
    /// the loss like [`close`](Self::close). New sends on them fail with `Closed`; sends
    /// waiting for room or flow credit fail with `Closed` once the peer has ended its
    /// side, and requests still unanswered then fail with `Disconnected`. Returns the
    /// connections, for the caller to wait until they have ended.
    pub(crate) fn close_draining(&self) -> Vec<ConnectionHandle> {
        // Dropping the transport must not cut the connections off while they drain.
        self.retired.store(true, Ordering::Release);
        let connections: Vec<ConnectionHandle> = self
            .wires
            .iter()
            .map(|slot| {
                slot.healthy.store(false, Ordering::Release);
                let connection = slot.connection();
                connection.close_gracefully();
                connection
            })
            .collect();
        tracing::debug!(dest = %self.dest, "destination transport closing after its queues");
        self.declare_lost();
        connections
    }

    /// Whether this side dialed the transport's connections; `false` for one adopted
    /// from a connection the peer dialed.
    pub fn is_dialed(&self) -> bool {
        self.dialed
    }

    /// The peer's identity (proc and launch id) on the first wire, as its handshake said.
    pub(crate) fn peer_identity(&self) -> Option<(plexus_core::ProcId, u64)> {
        let slot = self.wires.first()?;
        let connection = slot.locked();
        let peer = connection.peer();
        Some((peer.peer.clone(), peer.peer_launch_id))
    }

    /// Retires the transport without reporting a loss (another transport took its
    /// place): every connection closes gracefully, writing out what is queued.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.lost.store(true, Ordering::Release);
        for slot in &self.wires {
            slot.healthy.store(false, Ordering::Release);
            slot.connection().close_gracefully();
        }
        tracing::debug!(dest = %self.dest, "destination transport retired");
    }

    /// Lets go of the connections without closing them (they are about to be wrapped
    /// again): dropping the transport then neither closes them nor reports a loss.
    pub(crate) fn disown(&self) {
        self.retired.store(true, Ordering::Release);
        self.lost.store(true, Ordering::Release);
    }

    /// Whether the transport is lost: closed, or every wire failed.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Marks the transport lost and tells the owner, the first time only.
    fn declare_lost(&self) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            tracing::info!(dest = %self.dest, "destination lost");
            if let Some(owner) = &self.owner {
                owner.lost(&self.dest);
            }
        }
    }

    /// Puts `connection` in place of failed wire `index` and watches it. Returns `false`
    /// (and closes `connection`) when there is no such wire or it is healthy again.
    pub(crate) fn replace(&self, index: usize, connection: ConnectionHandle) -> bool {
        let Some(slot) = self.wires.get(index).filter(|_| !self.is_lost()) else {
            // A lost transport stays lost: its owner has already been told.
            connection.close();
            return false;
        };
        let mut current = slot.locked();
        if slot.healthy.load(Ordering::Acquire) && current.close_reason().is_none() {
            drop(current);
            connection.close();
            return false;
        }
        let old = std::mem::replace(&mut *current, connection);
        let generation = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
        slot.healthy.store(true, Ordering::Release);
        drop(current);
        old.close();
        watch(self.me.clone(), slot, generation);
        tracing::info!(dest = %self.dest, wire = index, "wire reconnected");
        true
    }

    /// The wire for the envelope's pair, pinning the pair if it falls back.
    fn pick(&self, envelope: &NetworkEnvelope) -> Option<&Arc<WireSlot>> {
        self.choose(pair_hash(envelope), true)
    }

    /// The pair's pinned wire if it is healthy, else the healthy wire with the highest
    /// rendezvous score. With `pin`, records a choice other than the pair's preferred
    /// wire (its best score over all wires) as a pin, and drops a pin whose wire failed.
    fn choose(&self, pair: u64, pin: bool) -> Option<&Arc<WireSlot>> {
        if self.pinned.load(Ordering::Acquire) {
            let mut pins = self.pins();
            if let Some(&index) = pins.get(&pair) {
                if let Some(slot) = self.wires.get(index).filter(|slot| slot.is_healthy()) {
                    return Some(slot);
                }
                if pin {
                    pins.remove(&pair);
                }
            }
        }
        // One pass scores each wire once: the best healthy wire and the preferred wire
        // (best over all) come from the same scores.
        let mut best: Option<(u64, &Arc<WireSlot>)> = None;
        let mut preferred: Option<(u64, usize)> = None;
        for slot in &self.wires {
            let score = score(pair, slot.index);
            if preferred.is_none_or(|(top, _)| score >= top) {
                preferred = Some((score, slot.index));
            }
            if best.is_none_or(|(top, _)| score >= top) && slot.is_healthy() {
                best = Some((score, slot));
            }
        }
        let (_, best) = best?;
        let preferred = preferred.map(|(_, index)| index);
        if pin && preferred != Some(best.index) {
            self.pins().insert(pair, best.index);
            self.pinned.store(true, Ordering::Release);
        }
        Some(best)
    }

    fn pins(&self) -> MutexGuard<'_, HashMap<u64, usize, FixedState>> {
        // The map is consistent after every statement, so a poisoned lock is still valid.
        self.pins.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The wire of one (sender, recipient) pair, picked once by
/// [`DestTransport::pair_sender`] for a run of that pair's envelopes.
///
/// [`try_send`](Self::try_send) queues on the wire's connection at once when its flow has
/// credit and its queue has room, and hands the envelope back otherwise, for
/// [`DestTransport::send_or_return`], which waits, moves the pair off a failed wire or
/// reports why it cannot send. Per-pair FIFO holds as long as the caller sends one
/// envelope of the pair at a time: an envelope handed back goes the waiting way before
/// the next one is tried. A pair may have moved by the time the waiting way returns, so
/// the caller picks again then.
#[derive(Clone, Debug)]
pub struct PairSender {
    slot: Arc<WireSlot>,
    connection: ConnectionHandle,
    /// The pair's flow window on `connection`, looked up once (`None` when the pair is
    /// not flow controlled there).
    window: Option<Arc<SendWindow>>,
    /// The pair it was picked for, to check each envelope's pair in debug builds.
    pair: u64,
}

impl PairSender {
    /// Queues `envelope` on the pair's wire if that needs no waiting: the wire is still
    /// marked healthy and the connection has credit for the envelope's flow and room in
    /// its queue. Hands the envelope back otherwise, queued nowhere and with no credit
    /// spent.
    ///
    /// `envelope` must be of the pair the sender was picked for (checked in debug builds).
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value for the waiting way"
    )]
    // Inline, as the connection's `try_send_in` is: an envelope (some 200 bytes) passed
    // by value through calls that are not inlined is copied at every one of them.
    #[inline]
    pub fn try_send(&self, envelope: NetworkEnvelope) -> Result<(), NetworkEnvelope> {
        debug_assert_eq!(
            pair_hash(&envelope),
            self.pair,
            "an envelope of another pair was given to a pair's sender"
        );
        // A flag the watcher or a close clears; reading it takes no lock.
        if !self.slot.healthy.load(Ordering::Acquire) {
            return Err(envelope);
        }
        // Whatever the refusal (no credit, full, closed, refused for good), the waiting
        // way meets it again and does what it calls for: waits, marks the wire failed and
        // moves the pair, or reports the error.
        self.connection
            .try_send_in(self.window.as_ref(), envelope)
            .map_err(TrySendError::into_envelope)
    }
}

impl Drop for DestTransport {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // Its connections are draining and end by themselves.
            return;
        }
        // The watchers hold connection handles, so the connections would outlive the
        // transport otherwise.
        for slot in &self.wires {
            slot.connection().close();
        }
        // A transport dropped without being closed (a dial discarded after it connected)
        // is lost too, so every `Connected` event gets its `Lost`.
        self.declare_lost();
    }
}

/// The hasher of pairs and scores: foldhash, as this runs on every send. A fixed seed
/// keeps scores, and with them every pair's wire, the same on every run.
const PAIR_HASHER: FixedState = FixedState::with_seed(0x706c_6578_7573);

/// The hash of an envelope's (sender, recipient) pair.
fn pair_hash(envelope: &NetworkEnvelope) -> u64 {
    let mut pair = PAIR_HASHER.build_hasher();
    envelope.sender.hash(&mut pair);
    envelope.recipient.hash(&mut pair);
    pair.finish()
}

/// A pair's score on one wire.
fn score(pair: u64, wire: usize) -> u64 {
    PAIR_HASHER.hash_one((pair, wire))
}

/// Marks `slot` failed as soon as its connection of `generation` ends, and tells the
/// transport's owner when that was the last healthy wire. Holds the slot and the
/// transport weakly, so a dropped transport does not keep them alive.
fn watch(transport: Weak<DestTransport>, slot: &Arc<WireSlot>, generation: u64) {
    let connection = slot.connection();
    let slot = Arc::downgrade(slot);
    tokio::spawn(async move {
        let reason = connection.closed().await;
        let (Some(slot), Some(transport)) = (slot.upgrade(), transport.upgrade()) else {
            return;
        };
        if slot.generation.load(Ordering::Acquire) != generation {
            return;
        }
        slot.mark_failed(&transport.dest, &reason);
        if !transport.is_healthy() && !transport.is_lost() {
            match &transport.owner {
                Some(owner) => owner.all_wires_failed(&transport),
                None => transport.close(),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use bytes::Bytes;
    use plexus_codec::{EnvelopeKind, MessageName, Recipient};
    use plexus_core::{ActorId, Location, ProcId};
    use tokio::sync::mpsc;

    use super::*;
    use crate::{ConnectionConfig, Hello, perform_handshake, spawn_connection};

    const LIMIT: Duration = Duration::from_secs(10);

    /// Envelope `n` of the one pair these tests send.
    fn numbered(n: u64) -> NetworkEnvelope {
        NetworkEnvelope {
            sender: Some(ActorId::new(ProcId::new("a", 1), "sender", 0)),
            recipient: Recipient::Actor(ActorId::new(ProcId::new("b", 1), "sink", 0)),
            trace_id: 0,
            hop_limit: plexus_codec::DEFAULT_HOP_LIMIT,
            kind: EnvelopeKind::Regular,
            name: MessageName::from_static("test.Numbered"),
            payload: Bytes::copy_from_slice(&n.to_be_bytes()),
        }
    }

    fn number(envelope: &NetworkEnvelope) -> u64 {
        u64::from_be_bytes(envelope.payload[..].try_into().unwrap())
    }

    /// A connection over an in-memory pipe of `pipe` bytes with a send queue of
    /// `queue` envelopes, and what its peer receives.
    async fn wire(
        pipe: usize,
        queue: usize,
    ) -> (
        ConnectionHandle,
        ConnectionHandle,
        mpsc::UnboundedReceiver<NetworkEnvelope>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(pipe);
        let (na, nb) = tokio::join!(
            perform_handshake(&mut a, Hello::new(ProcId::new("a", 1), 1), LIMIT),
            perform_handshake(&mut b, Hello::new(ProcId::new("b", 1), 2), LIMIT),
        );
        let config = ConnectionConfig {
            queue_capacity: queue,
            ..ConnectionConfig::default()
        };
        let sender = spawn_connection(a, na.unwrap(), config.clone(), |_| {}).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let receiver = spawn_connection(b, nb.unwrap(), config, move |envelope| {
            let _ = tx.send(envelope);
        })
        .unwrap();
        (sender, receiver, rx)
    }

    /// Sends `envelope` as a lane does: at once on the pair's wire when it can, else the
    /// waiting way. Returns whether it had to wait.
    async fn send_as_a_lane(
        transport: &DestTransport,
        sender: &mut Option<PairSender>,
        envelope: NetworkEnvelope,
    ) -> bool {
        if sender.is_none() {
            *sender = transport.pair_sender(&envelope);
        }
        let envelope = match sender.as_ref() {
            Some(sender) => match sender.try_send(envelope) {
                Ok(()) => return false,
                Err(envelope) => envelope,
            },
            None => envelope,
        };
        *sender = None;
        transport.send_or_return(envelope).await.unwrap();
        true
    }

    /// A pair's envelopes sent at once while there is room and the waiting way while the
    /// queue is full all arrive in order, on one wire: the waiting way is taken (the pipe
    /// is too small to keep up) and nothing overtakes an envelope that waits.
    #[tokio::test]
    async fn a_pair_keeps_its_order_across_the_waiting_way() {
        const COUNT: u64 = 3_000;
        let (first, _first_end, mut first_rx) = wire(256, 2).await;
        let (second, _second_end, mut second_rx) = wire(256, 2).await;
        let transport = DestTransport::new(
            Dest::new(Location::Local(7)),
            vec![first, second],
            None,
            true,
        );
        let sending = {
            let transport = Arc::clone(&transport);
            tokio::spawn(async move {
                let mut sender = None;
                let mut waited = 0;
                for n in 0..COUNT {
                    if send_as_a_lane(&transport, &mut sender, numbered(n)).await {
                        waited += 1;
                    }
                }
                waited
            })
        };
        let wire = transport.wire_for(&numbered(0)).unwrap();
        let (rx, other) = if wire == 0 {
            (&mut first_rx, &mut second_rx)
        } else {
            (&mut second_rx, &mut first_rx)
        };
        for n in 0..COUNT {
            let envelope = tokio::time::timeout(LIMIT, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("envelope {n} did not arrive"))
                .unwrap();
            assert_eq!(number(&envelope), n, "the pair's envelopes out of order");
        }
        let waited = sending.await.unwrap();
        assert!(waited > 0, "no envelope took the waiting way");
        assert!(other.try_recv().is_err(), "an envelope took the other wire");
    }

    /// A pair's sender on a wire whose connection ended hands the envelope back, and the
    /// waiting way moves the pair to the healthy wire, where it arrives.
    #[tokio::test]
    async fn a_closed_wire_hands_the_envelope_back_for_the_waiting_way() {
        let (first, _first_end, mut first_rx) = wire(64 * 1024, 16).await;
        let (second, _second_end, mut second_rx) = wire(64 * 1024, 16).await;
        let transport = DestTransport::new(
            Dest::new(Location::Local(7)),
            vec![first.clone(), second.clone()],
            None,
            true,
        );
        let sender = transport.pair_sender(&numbered(0)).unwrap();
        let (picked, rx, other_rx) = if transport.wire_for(&numbered(0)) == Some(0) {
            (first, &mut first_rx, &mut second_rx)
        } else {
            (second, &mut second_rx, &mut first_rx)
        };
        sender.try_send(numbered(0)).unwrap();
        let arrived = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(number(&arrived), 0);

        picked.close();
        tokio::time::timeout(LIMIT, picked.closed())
            .await
            .expect("the picked wire did not close");
        let back = sender
            .try_send(numbered(1))
            .expect_err("a closed wire took the envelope");
        assert_eq!(number(&back), 1);
        transport.send_or_return(back).await.unwrap();
        let moved = tokio::time::timeout(LIMIT, other_rx.recv())
            .await
            .expect("the envelope did not arrive on the other wire")
            .unwrap();
        assert_eq!(number(&moved), 1);
    }

    /// A pair's sender spends its flow's credit for every envelope it queues, from the
    /// window it looked up once, and hands the envelope back once the window is spent,
    /// so the waiting way can wait for credit.
    #[tokio::test]
    async fn a_pair_sender_spends_the_flows_credit() {
        let flow = crate::FlowConfig {
            window_messages: 4,
            ..crate::FlowConfig::default()
        };
        // The peer announces the window and runs no connection: nothing grants credit.
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let peer = Hello::new(ProcId::new("b", 1), 2).with_flow(flow);
        let (na, nb) = tokio::join!(
            perform_handshake(&mut a, Hello::new(ProcId::new("a", 1), 1), LIMIT),
            perform_handshake(&mut b, peer, LIMIT),
        );
        nb.unwrap();
        let connection =
            spawn_connection(a, na.unwrap(), ConnectionConfig::default(), |_| {}).unwrap();
        assert!(connection.is_flow_controlled());
        let transport = DestTransport::new(
            Dest::new(Location::Local(7)),
            vec![connection.clone()],
            None,
            true,
        );
        let sender = transport.pair_sender(&numbered(0)).unwrap();
        for n in 0..4 {
            sender.try_send(numbered(n)).unwrap();
        }
        assert_eq!(
            connection
                .credit_for(&numbered(0))
                .map(|(messages, _)| messages),
            Some(0)
        );
        let back = sender
            .try_send(numbered(4))
            .expect_err("an envelope went without credit");
        assert_eq!(number(&back), 4);
        drop(b);
    }
}
