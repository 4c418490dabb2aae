//! The gateway itself: attached procs, the forwarder, served locations and posting.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{Location, Proc, ProcId};

use crate::error::{AttachError, PostError};
use crate::location::{LocationStack, LocationToken};

/// Where a gateway sends every envelope that is not for one of its attached procs: in a
/// running system, the outproc transport manager, which dials the recipient's location.
///
/// `forward` is called on the posting thread and must not block or wait: it queues the
/// envelope or fails at once.
pub trait Forwarder: Send + Sync + 'static {
    /// Takes an envelope for a proc this gateway does not hold.
    fn forward(&self, envelope: NetworkEnvelope) -> Result<(), PostError>;
}

/// The connectivity boundary of one or more procs (design section 7).
///
/// Procs [`attach`](Gateway::attach) to it; [`post`](Gateway::post) hands an envelope
/// for an actor of an attached, live proc straight to that proc's
/// [`deliver_remote`](Proc::deliver_remote), with no serialization beyond the payload
/// already in the envelope, and everything else to the [`Forwarder`], or bounces it as
/// [`PostError::Unroutable`] when the gateway is isolated. Cloning is cheap: clones share
/// one gateway.
///
/// ```
/// use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
/// use plexus_core::{ActorId, Location, Proc, ProcId};
/// use plexus_gateway::{Gateway, PostError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let gateway = Gateway::isolated(Location::Local(1));
/// let proc = Proc::new(ProcId::unique("app"));
/// let _attachment = gateway.attach(&proc)?;
/// assert!(gateway.is_attached(proc.id()));
///
/// // Nobody here holds proc "elsewhere#7", and an isolated gateway forwards nothing.
/// let stranger = ActorId::new(ProcId::new("elsewhere", 7), "worker", 0);
/// let envelope = NetworkEnvelope {
///     sender: None,
///     recipient: Recipient::Actor(stranger),
///     trace_id: 0,
///     hop_limit: plexus_codec::DEFAULT_HOP_LIMIT,
///     kind: EnvelopeKind::Regular,
///     name: "app.Work".to_owned().into(),
///     payload: Default::default(),
/// };
/// assert!(matches!(gateway.post(envelope), Err(PostError::Unroutable { .. })));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// A handle that does not keep its gateway alive; see [`Gateway::downgrade`].
#[derive(Clone)]
pub struct WeakGateway {
    inner: Weak<Inner>,
}

struct Inner {
    /// Attached procs by id. The gateway holds only weak handles: the [`Attachment`]
    /// owns the proc handle, so a dropped attachment leaves a dead entry here.
    procs: RwLock<HashMap<ProcId, Weak<Attached>>>,
    locations: Mutex<LocationStack>,
    forwarder: Option<Arc<dyn Forwarder>>,
}

/// What an attachment shares with the gateway's table.
struct Attached {
    proc: Proc,
}

/// Keeps a proc attached to a gateway; dropping it (or calling
/// [`detach`](Attachment::detach)) detaches the proc. After that, envelopes for the proc
/// are treated like those for any other unknown proc.
#[must_use = "the proc is detached when the attachment is dropped"]
pub struct Attachment {
    entry: Arc<Attached>,
}

/// Keeps a location served; dropping it (or calling [`stop`](ServeGuard::stop)) removes
/// the location from the gateway's advertised-location stack.
#[must_use = "the location stops being served when the guard is dropped"]
pub struct ServeGuard {
    gateway: Weak<Inner>,
    token: LocationToken,
    location: Location,
}

impl Gateway {
    /// A gateway with no forwarder: envelopes for procs that are not attached bounce with
    /// [`PostError::Unroutable`]. `reserved` is advertised while no location is served.
    pub fn isolated(reserved: Location) -> Self {
        Gateway::build(reserved, None)
    }

    /// A gateway that hands envelopes for procs that are not attached to `forwarder`.
    /// `reserved` is advertised while no location is served.
    pub fn with_forwarder(reserved: Location, forwarder: Arc<dyn Forwarder>) -> Self {
        Gateway::build(reserved, Some(forwarder))
    }

    fn build(reserved: Location, forwarder: Option<Arc<dyn Forwarder>>) -> Self {
        Gateway {
            inner: Arc::new(Inner {
                procs: RwLock::new(HashMap::new()),
                locations: Mutex::new(LocationStack::new(reserved)),
                forwarder,
            }),
        }
    }

    /// Attaches `proc`: from now on envelopes for its actors are delivered to it directly.
    ///
    /// Fails with [`AttachError::AlreadyAttached`] while another proc with the same id is
    /// attached; an entry whose attachment was dropped is replaced silently.
    pub fn attach(&self, proc: &Proc) -> Result<Attachment, AttachError> {
        let mut procs = self
            .inner
            .procs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = procs.get(proc.id()) {
            if existing.strong_count() > 0 {
                return Err(AttachError::AlreadyAttached {
                    proc: proc.id().clone(),
                });
            }
            tracing::debug!(proc = %proc.id(), "replacing a dead gateway entry");
        }
        let entry = Arc::new(Attached { proc: proc.clone() });
        procs.insert(proc.id().clone(), Arc::downgrade(&entry));
        tracing::debug!(proc = %proc.id(), "proc attached to gateway");
        Ok(Attachment { entry })
    }

    /// Whether a live proc with this id is attached.
    pub fn is_attached(&self, proc: &ProcId) -> bool {
        self.inner.attached(proc).is_some()
    }

    /// Routes one envelope without waiting; see the type's documentation.
    ///
    /// An envelope for an actor of an attached proc goes to its
    /// [`deliver_remote`](Proc::deliver_remote), and a refusal comes back as
    /// [`PostError::Delivery`]. Only tells (`regular` envelopes) are delivered to attached
    /// procs for now; other kinds bounce with [`PostError::UnsupportedKind`]. Everything
    /// else goes to the forwarder, or bounces as [`PostError::Unroutable`] /
    /// [`PostError::Unaddressed`] when the gateway is isolated.
    pub fn post(&self, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.inner.post(envelope)
    }

    /// Records `location` as served, making it the default advertised location until it
    /// stops or a later one starts.
    ///
    /// This slice only records the location: listening on it comes with the transport
    /// wiring, which will start the listener here and stop it with the guard.
    pub fn serve_location(&self, location: Location) -> ServeGuard {
        let token = self.inner.locations().push(location.clone());
        tracing::info!(%location, "gateway serves location");
        ServeGuard {
            gateway: Arc::downgrade(&self.inner),
            token,
            location,
        }
    }

    /// The location to advertise: the last served location still active, or the location
    /// reserved at construction.
    pub fn default_location(&self) -> Location {
        self.inner.locations().current().clone()
    }

    /// A handle that does not keep the gateway alive.
    pub fn downgrade(&self) -> WeakGateway {
        WeakGateway {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attached = self
            .inner
            .procs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|entry| entry.strong_count() > 0)
            .count();
        f.debug_struct("Gateway")
            .field("attached", &attached)
            .field("default_location", &self.default_location())
            .field("isolated", &self.inner.forwarder.is_none())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn locations(&self) -> MutexGuard<'_, LocationStack> {
        self.locations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The live attached proc with this id, cleaning its entry if it is dead.
    fn attached(&self, id: &ProcId) -> Option<Arc<Attached>> {
        let weak = self
            .procs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()?;
        if let Some(entry) = weak.upgrade() {
            return Some(entry);
        }
        let mut procs = self.procs.write().unwrap_or_else(PoisonError::into_inner);
        // Another attach may have replaced the dead entry meanwhile; keep a live one.
        if procs.get(id).is_some_and(|entry| entry.strong_count() == 0) {
            procs.remove(id);
            tracing::debug!(proc = %id, "removed a dead gateway entry");
        }
        None
    }

    fn post(&self, mut envelope: NetworkEnvelope) -> Result<(), PostError> {
        let proc = match &envelope.recipient {
            Recipient::Actor(actor) => Some(actor.proc()),
            Recipient::Group(_) | Recipient::Transport => None,
        };
        if let Some(entry) = proc.and_then(|proc| self.attached(proc)) {
            return deliver(&entry.proc, &envelope);
        }
        match (&self.forwarder, proc) {
            (Some(forwarder), _) => {
                // Every gateway that passes an envelope on spends one hop, so a loop
                // through proxies ends with an error instead of spinning.
                if envelope.hop_limit == 0 {
                    tracing::warn!(recipient = %envelope.recipient, "hop limit spent, envelope dropped");
                    return Err(PostError::TtlExpired {
                        recipient: envelope.recipient,
                    });
                }
                envelope.hop_limit -= 1;
                forwarder.forward(envelope)
            }
            (None, Some(proc)) => {
                tracing::debug!(%proc, name = &*envelope.name, "unroutable envelope bounced");
                Err(PostError::Unroutable { proc: proc.clone() })
            }
            (None, None) => Err(PostError::Unaddressed {
                recipient: envelope.recipient,
            }),
        }
    }
}

/// Hands a tell to an attached proc.
fn deliver(proc: &Proc, envelope: &NetworkEnvelope) -> Result<(), PostError> {
    let Recipient::Actor(actor) = &envelope.recipient else {
        // `post` only calls this for actor recipients.
        return Err(PostError::Unaddressed {
            recipient: envelope.recipient.clone(),
        });
    };
    if envelope.kind != EnvelopeKind::Regular {
        return Err(PostError::UnsupportedKind {
            kind: envelope.kind.as_str(),
            proc: proc.id().clone(),
        });
    }
    proc.deliver_remote(actor.name(), &envelope.name, &envelope.payload, None)
        .map_err(|source| {
            tracing::debug!(%actor, name = &*envelope.name, error = %source, "attached proc refused envelope");
            PostError::Delivery {
                proc: proc.id().clone(),
                source,
            }
        })
}

impl WeakGateway {
    /// Posts through the gateway if it still exists, like [`Gateway::post`]; once it is
    /// gone, the envelope bounces with [`PostError::BrokenLink`].
    pub fn post(&self, envelope: NetworkEnvelope) -> Result<(), PostError> {
        match self.inner.upgrade() {
            Some(inner) => inner.post(envelope),
            None => {
                tracing::debug!(recipient = %envelope.recipient, "gateway gone, envelope bounced");
                Err(PostError::BrokenLink {
                    recipient: envelope.recipient,
                })
            }
        }
    }

    /// The gateway, if it still exists.
    pub fn upgrade(&self) -> Option<Gateway> {
        self.inner.upgrade().map(|inner| Gateway { inner })
    }
}

impl fmt::Debug for WeakGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakGateway")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

impl Attachment {
    /// The id of the attached proc.
    pub fn proc_id(&self) -> &ProcId {
        self.entry.proc.id()
    }

    /// Detaches the proc now; the same as dropping the attachment.
    pub fn detach(self) {}
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("proc", self.proc_id())
            .finish()
    }
}

impl ServeGuard {
    /// The served location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Stops serving the location now; the same as dropping the guard.
    pub fn stop(self) {}
}

impl Drop for ServeGuard {
    fn drop(&mut self) {
        let Some(inner) = self.gateway.upgrade() else {
            return;
        };
        if inner.locations().remove(self.token) {
            tracing::info!(location = %self.location, "gateway stopped serving location");
        }
    }
}

impl fmt::Debug for ServeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeGuard")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use plexus_core::{ActorId, Location, Proc, ProcId};

    use super::*;

    fn entries(gateway: &Gateway) -> usize {
        gateway
            .inner
            .procs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn tell_to(proc: &ProcId) -> NetworkEnvelope {
        NetworkEnvelope {
            sender: None,
            recipient: Recipient::Actor(ActorId::new(proc.clone(), "worker", 0)),
            trace_id: 0,
            hop_limit: plexus_codec::DEFAULT_HOP_LIMIT,
            kind: EnvelopeKind::Regular,
            name: "test.Work".to_owned().into(),
            payload: Default::default(),
        }
    }

    /// A dropped attachment leaves a dead entry that the next post for that proc removes,
    /// bouncing the envelope as for any unknown proc.
    #[test]
    fn post_cleans_dead_entries() {
        let gateway = Gateway::isolated(Location::Local(0));
        let proc = Proc::new(ProcId::new("short-lived", 1));
        let other = Proc::new(ProcId::new("long-lived", 1));
        let attachment = gateway.attach(&proc);
        let _kept = gateway.attach(&other);
        assert!(attachment.is_ok());
        assert_eq!(entries(&gateway), 2);

        drop(attachment);
        assert_eq!(
            entries(&gateway),
            2,
            "dropping the attachment only kills the entry"
        );
        assert!(matches!(
            gateway.post(tell_to(proc.id())),
            Err(PostError::Unroutable { .. })
        ));
        assert_eq!(entries(&gateway), 1);
    }
}
