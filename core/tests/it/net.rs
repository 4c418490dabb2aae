//! The in-process network the remote tests share: `Net` joins procs of one process with a
//! real `RemoteRoute` (`Link`) that takes encoded messages on one side and calls the
//! other proc's `deliver_remote_to`, as a gateway does between the procs it has attached;
//! a location can be marked down to act out a lost connection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use plexus_core::{
    ActorId, DeliveryError, Location, Outbound, Proc, ProcAddr, ProcId, RemoteAskError,
    RemoteRoute, RouteError, RouteTell,
};
use tokio::sync::oneshot;

/// Procs by location, and the locations whose connection is down.
#[derive(Default)]
pub(crate) struct Net {
    procs: Mutex<HashMap<Location, Proc>>,
    down: Mutex<HashSet<Location>>,
    /// The wire name and sender of every message routed, in order.
    pub(crate) sent: Mutex<Vec<(&'static str, Option<ActorId>)>>,
}

impl Net {
    /// A proc reached at `local:n`, with its route installed.
    pub(crate) fn proc(self: &Arc<Self>, label: &str, n: u64) -> Proc {
        let proc = Proc::new(ProcId::unique(label));
        let location = Location::Local(n);
        self.procs
            .lock()
            .unwrap()
            .insert(location.clone(), proc.clone());
        proc.set_route(Some(Arc::new(Link {
            net: self.clone(),
            location,
        })));
        proc
    }

    pub(crate) fn set_down(&self, location: &Location, down: bool) {
        let mut set = self.down.lock().unwrap();
        if down {
            set.insert(location.clone());
        } else {
            set.remove(location);
        }
    }

    /// The proc an outbound message is for, or why it cannot be reached.
    fn destination(&self, message: &Outbound) -> Result<Proc, RouteError> {
        self.sent
            .lock()
            .unwrap()
            .push((message.name, message.sender.clone()));
        let location = &message.recipient.location;
        if self.down.lock().unwrap().contains(location) {
            return Err(RouteError::Disconnected {
                location: location.clone(),
            });
        }
        let proc = self.procs.lock().unwrap().get(location).cloned();
        match proc {
            // A gateway routes on the proc id: a message for another proc never lands here.
            Some(proc) if proc.id() == message.recipient.actor.proc() => Ok(proc),
            _ => Err(RouteError::Unroutable {
                location: location.clone(),
                reason: format!("no proc {}", message.recipient.actor.proc()),
            }),
        }
    }
}

/// One proc's way out into the `Net`.
pub(crate) struct Link {
    pub(crate) net: Arc<Net>,
    pub(crate) location: Location,
}

impl RemoteRoute for Link {
    fn local_location(&self) -> Location {
        self.location.clone()
    }

    fn tell(&self, message: Outbound) -> RouteTell {
        let net = self.net.clone();
        RouteTell::waiting(async move {
            let proc = net.destination(&message)?;
            let to = &message.recipient.actor;
            match proc.deliver_remote_to(to, message.name, &message.payload, None) {
                // The flow's pusher: wait for room, keeping this sender's order.
                Err(DeliveryError::Full { pending }) => {
                    let _ = pending.deliver().await;
                    Ok(())
                }
                // Anything else is the receiving side's business (its undeliverable).
                _ => Ok(()),
            }
        })
    }

    fn try_tell(&self, message: Outbound) -> Result<(), (RouteError, Outbound)> {
        let proc = match self.net.destination(&message) {
            Ok(proc) => proc,
            Err(error) => return Err((error, message)),
        };
        let to = &message.recipient.actor;
        match proc.deliver_remote_to(to, message.name, &message.payload, None) {
            Err(DeliveryError::Full { .. }) => Err((RouteError::Full, message)),
            _ => Ok(()),
        }
    }

    fn ask(
        &self,
        message: Outbound,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteAskError>> {
        let net = self.net.clone();
        Box::pin(async move {
            let proc = match net.destination(&message) {
                Ok(proc) => proc,
                Err(RouteError::Disconnected { location }) => {
                    return Err(RemoteAskError::Disconnected { location });
                }
                Err(error) => {
                    return Err(RemoteAskError::Unroutable {
                        reason: error.to_string(),
                    });
                }
            };
            let (reply, answer) = oneshot::channel();
            let delivered = proc.deliver_remote_to(
                &message.recipient.actor,
                message.name,
                &message.payload,
                Some(Box::new(move |outcome| {
                    let _ = reply.send(outcome);
                })),
            );
            if let Err(DeliveryError::Full { pending }) = delivered {
                let _ = pending.deliver().await;
            }
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(RemoteAskError::Abandoned),
                Err(_) => Err(RemoteAskError::Timeout {
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                }),
            }
        })
    }
}

/// The address of `proc` reached at `local:n`.
pub(crate) fn addr(proc: &Proc, n: u64) -> ProcAddr {
    ProcAddr::new(proc.id().clone(), Location::Local(n))
}
