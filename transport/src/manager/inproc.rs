//! The in-process transport manager: the [`OutprocTransportManager`](super::OutprocTransportManager)
//! interface for procs of one process, over channels instead of sockets.
//!
//! Managers bind a [`Dest`] in a shared [`InprocHub`]. The first send between two of them
//! joins them with one in-process connection (two
//! [`ConnectionHandle`](crate::ConnectionHandle)s over bounded channels, no codec, no
//! serialization) and stores one end in each manager's table, under both tables' locks
//! taken in `Dest` order, so two managers that send to each other at once still share one
//! connection. Sends wait while the receiving end's queue is full, requests are answered
//! through the connection's request table, and the errors are the outproc manager's.
//!
//! ```text
//! send(dest) ──▶ table ──(absent)──▶ hub lookup ──▶ pair stored on both ends ──▶ queue
//!                  ▲                                                            │
//!                  └────────── closed (either end): removed, Lost published ◀───┘
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use plexus_codec::{Capabilities, NetworkEnvelope, SUPPORTED_VERSIONS};
use tokio::sync::broadcast;

use super::{DestEvent, DialError, Events, TransportError};
use crate::connection::{End, inproc_pair};
use crate::{
    ConnectError, ConnectionHandle, Dest, Hello, Inbound, Negotiated, SendError, WireError,
};

/// The in-process managers of one process, by the destination each is bound to. Cheap
/// to clone; clones share the bindings.
#[derive(Clone, Default)]
pub struct InprocHub {
    bound: Arc<Mutex<HashMap<Dest, Weak<Inner>>>>,
}

impl std::fmt::Debug for InprocHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InprocHub")
            .field("bound", &self.locked().len())
            .finish()
    }
}

impl InprocHub {
    /// An empty hub.
    pub fn new() -> Self {
        InprocHub::default()
    }

    /// The destinations bound now, in no particular order.
    pub fn bound(&self) -> Vec<Dest> {
        self.locked()
            .iter()
            .filter(|(_, manager)| manager.strong_count() > 0)
            .map(|(dest, _)| dest.clone())
            .collect()
    }

    fn locked(&self) -> MutexGuard<'_, HashMap<Dest, Weak<Inner>>> {
        // Every statement leaves the map valid.
        self.bound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, dest: &Dest) -> Option<Arc<Inner>> {
        self.locked().get(dest).and_then(Weak::upgrade)
    }
}

/// Sends envelopes to the other procs of this process, with the interface of the
/// [`OutprocTransportManager`](super::OutprocTransportManager).
///
/// Dropping it unbinds its destination and closes its connections (their in-flight
/// requests fail with `Disconnected`).
///
/// ```
/// use std::time::Duration;
///
/// use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome};
/// use plexus_core::{Location, ProcId};
/// use plexus_transport::{ConnectionRef, Dest, Hello, Inbound, InprocHub, InprocTransportManager};
///
/// /// Answers every request on the connection it came from.
/// struct Answer;
/// impl Inbound for Answer {
///     fn deliver(&self, _envelope: NetworkEnvelope) {}
///     fn deliver_from(&self, envelope: NetworkEnvelope, from: &ConnectionRef) {
///         if let Some(id) = envelope.kind.request_id() {
///             let kind = EnvelopeKind::Response { id, outcome: Outcome::Ok, is_last: true };
///             let _ = from.try_send(NetworkEnvelope::control(kind));
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = InprocHub::new();
/// let (a, b) = (Dest::new(Location::Local(1)), Dest::new(Location::Local(2)));
/// let _server = InprocTransportManager::new(&hub, b.clone(), Hello::new(ProcId::new("b", 1), 2), 64, Answer)?;
/// let client = InprocTransportManager::new(&hub, a, Hello::new(ProcId::new("a", 1), 1), 64, |_| {})?;
/// let question = NetworkEnvelope::control(EnvelopeKind::Regular);
/// let answer = client.request(&b, question, Duration::from_secs(5)).await?;
/// assert!(matches!(answer.kind, EnvelopeKind::Response { outcome: Outcome::Ok, .. }));
/// # Ok(())
/// # }
/// ```
pub struct InprocTransportManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InprocTransportManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InprocTransportManager")
            .field("local", &self.inner.local)
            .field("dests", &self.inner.table().len())
            .finish()
    }
}

struct Inner {
    hub: InprocHub,
    local: Dest,
    hello: Hello,
    capacity: usize,
    inbound: Arc<dyn Inbound>,
    table: Mutex<HashMap<Dest, ConnectionHandle>>,
    events: Events,
}

/// Why an [`InprocTransportManager`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InprocBindError {
    /// Another live manager is bound to the destination.
    #[error("an in-process manager is already bound to {dest}")]
    InUse {
        /// The destination.
        dest: Dest,
    },
}

impl InprocTransportManager {
    /// A manager bound to `local` in `hub`, announcing `hello` to its peers, with send
    /// queues of `capacity` envelopes (at least 1) per connection, handing what peers
    /// send (other than responses to its requests) to `inbound`. Must be called inside a
    /// tokio runtime.
    pub fn new(
        hub: &InprocHub,
        local: Dest,
        hello: Hello,
        capacity: usize,
        inbound: impl Inbound,
    ) -> Result<Self, InprocBindError> {
        let mut bound = hub.locked();
        if bound
            .get(&local)
            .is_some_and(|manager| manager.strong_count() > 0)
        {
            return Err(InprocBindError::InUse { dest: local });
        }
        let inner = Arc::new(Inner {
            hub: hub.clone(),
            local: local.clone(),
            hello,
            capacity: capacity.max(1),
            inbound: Arc::new(inbound),
            table: Mutex::new(HashMap::new()),
            events: Events::new(),
        });
        bound.insert(local, Arc::downgrade(&inner));
        Ok(InprocTransportManager { inner })
    }

    /// The destination this manager is bound to.
    pub fn local(&self) -> &Dest {
        &self.inner.local
    }

    /// Sends `envelope` to the manager bound to `dest`, connecting first if needed.
    ///
    /// Waits while the connection's queue is full. Fails with
    /// [`TransportError::Connect`] when no manager is bound to `dest`, and with
    /// [`TransportError::NoHealthyWire`] when the connection closed under the send.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped send queued nothing.
    pub async fn send(&self, dest: &Dest, envelope: NetworkEnvelope) -> Result<(), TransportError> {
        let connection = self.connection(dest)?;
        match connection.send(envelope).await {
            Ok(()) => Ok(()),
            Err(SendError::Flow { error, .. }) => Err(TransportError::Flow {
                dest: dest.clone(),
                source: error,
            }),
            Err(_) => Err(TransportError::NoHealthyWire { dest: dest.clone() }),
        }
    }

    /// Sends `envelope` as a request to `dest` and waits at most `timeout` for the
    /// response. If either end closes meanwhile, fails at once with
    /// [`RequestError::Disconnected`](crate::RequestError::Disconnected).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future forgets the request; it may or may not have been sent.
    pub async fn request(
        &self,
        dest: &Dest,
        envelope: NetworkEnvelope,
        timeout: Duration,
    ) -> Result<NetworkEnvelope, TransportError> {
        let connection = self.connection(dest)?;
        connection
            .request(envelope, timeout)
            .await
            .map_err(|source| TransportError::Request {
                dest: dest.clone(),
                source,
            })
    }

    /// The connection to `dest`, if there is one. Never connects.
    pub fn connection_to(&self, dest: &Dest) -> Option<ConnectionHandle> {
        self.inner
            .table()
            .get(dest)
            .filter(|connection| connection.close_reason().is_none())
            .cloned()
    }

    /// Closes the connection to `dest` (on both ends). Its in-flight requests fail with
    /// `Disconnected`. Returns whether there was one.
    pub fn close_transport(&self, dest: &Dest) -> bool {
        let removed = self.inner.table().remove(dest);
        match removed {
            Some(connection) => {
                connection.close();
                self.inner.events.publish(DestEvent::Lost(dest.clone()));
                true
            }
            None => false,
        }
    }

    /// Closes every connection.
    pub fn close_all(&self) {
        for dest in self.list_dests() {
            self.close_transport(&dest);
        }
    }

    /// The destinations connected, in no particular order.
    pub fn list_dests(&self) -> Vec<Dest> {
        self.inner.table().keys().cloned().collect()
    }

    /// Whether `dest` is connected.
    pub fn has_dest(&self, dest: &Dest) -> bool {
        self.inner.table().contains_key(dest)
    }

    /// How many destinations are connected.
    pub fn dest_count(&self) -> usize {
        self.inner.table().len()
    }

    /// Subscribes to the destinations connected and lost from now on, as
    /// [`OutprocTransportManager::subscribe`](super::OutprocTransportManager::subscribe).
    pub fn subscribe(&self) -> broadcast::Receiver<DestEvent> {
        self.inner.events.all.subscribe()
    }

    /// Subscribes to the destinations lost from now on.
    pub fn subscribe_lost(&self) -> broadcast::Receiver<Dest> {
        self.inner.events.lost.subscribe()
    }

    /// The live connection to `dest`, made on both ends if there is none.
    fn connection(&self, dest: &Dest) -> Result<ConnectionHandle, TransportError> {
        if let Some(connection) = self.connection_to(dest) {
            return Ok(connection);
        }
        let Some(peer) = self.inner.hub.get(dest).filter(|peer| peer.local == *dest) else {
            return Err(not_bound(dest));
        };
        Ok(Inner::join(&self.inner, &peer))
    }
}

impl Drop for InprocTransportManager {
    fn drop(&mut self) {
        let mut bound = self.inner.hub.locked();
        if bound
            .get(&self.inner.local)
            .is_some_and(|manager| std::ptr::eq(manager.as_ptr(), Arc::as_ptr(&self.inner)))
        {
            bound.remove(&self.inner.local);
        }
        drop(bound);
        let connections: Vec<_> = self.inner.table().drain().map(|(_, c)| c).collect();
        for connection in connections {
            connection.close();
        }
    }
}

impl Inner {
    fn table(&self) -> MutexGuard<'_, HashMap<Dest, ConnectionHandle>> {
        // Every statement leaves the map valid.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection between `this` and `peer`: the live one either stored, or a new
    /// pair stored on both ends. Both tables are locked, in `Dest` order, so two managers
    /// joining each other at once make one pair.
    fn join(this: &Arc<Inner>, peer: &Arc<Inner>) -> ConnectionHandle {
        if Arc::ptr_eq(this, peer) {
            // A proc sending to itself: one end is enough, its replies come back to it.
            return Self::join_self(this);
        }
        let this_first = this.local <= peer.local;
        let (mut first, mut second) = if this_first {
            (this.table(), peer.table())
        } else {
            (peer.table(), this.table())
        };
        let (mine, theirs) = if this_first {
            (&mut *first, &mut *second)
        } else {
            (&mut *second, &mut *first)
        };
        if let Some(existing) = mine
            .get(&peer.local)
            .filter(|connection| connection.close_reason().is_none())
        {
            return existing.clone();
        }
        let (a, b) = inproc_pair(
            this.end(peer),
            peer.end(this),
            this.capacity.min(peer.capacity),
        );
        mine.insert(peer.local.clone(), a.clone());
        theirs.insert(this.local.clone(), b.clone());
        drop(first);
        drop(second);
        watch(Arc::downgrade(this), peer.local.clone(), &a);
        watch(Arc::downgrade(peer), this.local.clone(), &b);
        this.events
            .publish(DestEvent::Connected(peer.local.clone()));
        peer.events
            .publish(DestEvent::Connected(this.local.clone()));
        a
    }

    fn join_self(this: &Arc<Inner>) -> ConnectionHandle {
        let mut table = this.table();
        if let Some(existing) = table
            .get(&this.local)
            .filter(|connection| connection.close_reason().is_none())
        {
            return existing.clone();
        }
        let (a, b) = inproc_pair(this.end(this), this.end(this), this.capacity);
        table.insert(this.local.clone(), a.clone());
        drop(table);
        // The other end lives as long as the stored one: it is the way replies come back.
        let keep = b;
        let stored = a.clone();
        tokio::spawn(async move {
            let _ = stored.closed().await;
            drop(keep);
        });
        watch(Arc::downgrade(this), this.local.clone(), &a);
        this.events
            .publish(DestEvent::Connected(this.local.clone()));
        a
    }

    /// The end of a pair that `self` holds towards `peer`.
    fn end(&self, peer: &Inner) -> End {
        End {
            negotiated: Negotiated {
                version: SUPPORTED_VERSIONS.max,
                capabilities: Capabilities::empty(),
                peer: peer.hello.proc.clone(),
                peer_launch_id: peer.hello.launch_id,
                peer_max_frame_size: u32::MAX,
                peer_location: Some(peer.local.location().clone()),
                peer_flow: None,
                local_flow: None,
            },
            inbound: Arc::clone(&self.inbound),
        }
    }
}

/// Forgets `connection` in `manager`'s table under `dest` once it closes, publishing the
/// loss, unless a newer connection took its place.
fn watch(manager: Weak<Inner>, dest: Dest, connection: &ConnectionHandle) {
    let closed = connection.downgrade();
    let watched = connection.clone();
    tokio::spawn(async move {
        let _ = watched.closed().await;
        drop(watched);
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let mut table = manager.table();
        let current = table
            .get(&dest)
            .is_some_and(|stored| stored.downgrade().same_connection(&closed));
        if current {
            table.remove(&dest);
            drop(table);
            manager.events.publish(DestEvent::Lost(dest));
        }
    });
}

fn not_bound(dest: &Dest) -> TransportError {
    TransportError::Connect(ConnectError::Failed {
        dest: dest.clone(),
        source: Arc::new(DialError::Wire(WireError::Refused {
            dest: dest.clone(),
            reason: "no in-process manager is bound there",
        })),
    })
}
