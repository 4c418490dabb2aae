//! Serving a location: a listener, a handshake per accepted wire (bounded in time), and a
//! [`Link`] per connection whose inbound envelopes are posted into the gateway.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use plexus_core::Location;
#[cfg(all(unix, feature = "unix"))]
use plexus_transport::UnixWireListener;
use plexus_transport::{TcpWireListener, Wire, WireError, WireListener, perform_handshake};
use tokio::task::JoinHandle;

use crate::error::ServeError;
use crate::gateway::{Gateway, Inner, ServeGuard};
use crate::link::Link;

/// A location being served: the listener's task and the connections it accepted.
///
/// Dropping it (or calling [`stop`](ServeHandle::stop)) stops listening, closes the
/// connections it accepted (their in-flight requests fail with `Disconnected` on the
/// other side) and removes the location from the advertised-location stack.
/// [`wait`](ServeHandle::wait) resolves when the server ends by itself.
#[must_use = "the location stops being served when the handle is dropped"]
pub struct ServeHandle {
    location: Location,
    guard: Option<ServeGuard>,
    task: JoinHandle<()>,
    links: Arc<Mutex<Vec<Weak<Link>>>>,
}

impl Gateway {
    /// Listens on `location` and serves it: every accepted wire does its handshake
    /// (bounded by the manager's `handshake_timeout`) and becomes a connection whose
    /// envelopes are posted into this gateway; requests are answered on the connection
    /// they came on, and procs of other gateways may attach through it.
    ///
    /// The location actually bound (`tcp://127.0.0.1:0` becomes the port the system
    /// picked) is the handle's [`location`](ServeHandle::location) and becomes the default
    /// advertised location. `local:N` needs `GatewayConfig::inproc`; `unix://` the
    /// `unix` feature.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled call serves nothing.
    pub async fn serve(&self, location: Location) -> Result<ServeHandle, ServeError> {
        let listener: Box<dyn WireListener> = match &location {
            Location::Tcp(addr) => Box::new(TcpWireListener::bind(*addr).await?),
            #[cfg(all(unix, feature = "unix"))]
            Location::Unix(path) => Box::new(UnixWireListener::bind(path)?),
            #[cfg(not(all(unix, feature = "unix")))]
            Location::Unix(_) => {
                return Err(ServeError::Unsupported {
                    location,
                    reason: "built without the `unix` feature",
                });
            }
            Location::Local(number) => match &self.inner.config.inproc {
                Some(network) => Box::new(network.bind(*number)?),
                None => {
                    return Err(ServeError::Unsupported {
                        location,
                        reason: "no in-process network in the gateway's config",
                    });
                }
            },
        };
        let bound = listener.location().clone();
        let guard = ServeGuard::record(&self.inner, bound.clone());
        tracing::info!(location = %bound, "gateway listening");
        let links = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::downgrade(&self.inner),
            self.inner.on_shutdown(),
            Arc::clone(&links),
        ));
        Ok(ServeHandle {
            location: bound,
            guard: Some(guard),
            task,
            links,
        })
    }
}

impl ServeHandle {
    /// The location actually bound.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// How many accepted connections are open.
    pub fn connection_count(&self) -> usize {
        self.links()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|link| link.is_open())
            .count()
    }

    /// Stops serving now; the same as dropping the handle.
    pub fn stop(self) {}

    /// Waits until the server ends by itself: its listener failed for good, or the
    /// gateway was dropped (which also closes every connection it accepted).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        match (&mut self.task).await {
            Ok(()) => Ok(()),
            Err(error) => Err(ServeError::Aborted {
                location: self.location.clone(),
                reason: error.to_string(),
            }),
        }
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Link>>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.task.abort();
        for link in self.links().drain(..).filter_map(|link| link.upgrade()) {
            link.connection.close();
        }
        if let Some(guard) = self.guard.take() {
            guard.stop();
        }
    }
}

impl std::fmt::Debug for ServeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeHandle")
            .field("location", self.location())
            .field("connections", &self.connection_count())
            .finish()
    }
}

/// Accepts wires until the listener fails for good or the gateway is gone. Each wire's
/// handshake runs in its own task, so a slow peer never delays the next accept.
async fn accept_loop(
    mut listener: Box<dyn WireListener>,
    gateway: Weak<Inner>,
    mut shutdown: tokio::sync::watch::Receiver<()>,
    links: Arc<Mutex<Vec<Weak<Link>>>>,
) {
    let location = listener.location().clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => {
                tracing::info!(%location, "gateway gone, server ends");
                return;
            }
        };
        let wire = match accepted {
            Ok(wire) => wire,
            Err(WireError::Accept { source, .. }) if is_transient(&source) => {
                // Out of descriptors or a connection reset before accept: retry shortly.
                tracing::warn!(%location, error = %source, "accept failed, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%location, %error, "listener failed, server ends");
                return;
            }
        };
        if gateway.strong_count() == 0 {
            return;
        }
        tokio::spawn(accept_wire(wire, gateway.clone(), Arc::clone(&links)));
    }
}

fn is_transient(error: &std::io::Error) -> bool {
    !matches!(error.kind(), std::io::ErrorKind::NotConnected)
}

/// Handshakes one accepted wire and opens its link.
async fn accept_wire(mut wire: Wire, gateway: Weak<Inner>, links: Arc<Mutex<Vec<Weak<Link>>>>) {
    let Some(inner) = gateway.upgrade() else {
        return;
    };
    let hello = inner.current_hello();
    let limit = inner.config.manager.handshake_timeout;
    let connection = inner.config.manager.connection.clone();
    let capacity = inner.config.dest_queue_capacity;
    // Not held across the handshake: a peer that never answers must not keep the gateway.
    drop(inner);
    let peer = wire.peer().to_owned();
    let negotiated = match perform_handshake(&mut wire, hello, limit).await {
        Ok(negotiated) => negotiated,
        Err(error) => {
            tracing::warn!(%peer, %error, "handshake of an accepted wire failed");
            return;
        }
    };
    let peer_location = negotiated.peer_location.clone();
    // Locked before the link starts: whoever got an envelope over the link and then
    // counts the connections counts this one.
    let mut listed = links.lock().unwrap_or_else(PoisonError::into_inner);
    match Link::open(
        gateway.clone(),
        wire,
        negotiated,
        connection,
        capacity,
        true,
    ) {
        Ok(link) => {
            listed.retain(|link| link.upgrade().is_some_and(|link| link.is_open()));
            listed.push(Arc::downgrade(&link));
            drop(listed);
            if let (Some(location), Some(inner)) = (&peer_location, gateway.upgrade()) {
                inner.accepted_opened(location);
            }
            // The accepted link is owned by this task until it closes. A peer that said
            // where it is reached is then lost for the attached procs' remote watches
            // and links, once no other connection to it remains.
            tokio::spawn(async move {
                link.connection.closed().await;
                drop(link);
                if let (Some(location), Some(inner)) = (peer_location, gateway.upgrade()) {
                    inner.accepted_closed(&location);
                }
            });
        }
        Err(error) => tracing::error!(%peer, %error, "accepted connection not started"),
    }
}
