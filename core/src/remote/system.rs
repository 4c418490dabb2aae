//! The system protocol between procs: remote watch, link, stop and lookup, carried as
//! ordinary remote messages whose names start with [`SYSTEM_PREFIX`] and intercepted by
//! [`Proc::deliver_remote`] before any actor is looked up.
//!
//! ```text
//! watcher's proc                                   target's proc
//!   entry(id) ── $sys.Watch{id, target, watcher, kind} ──▶ Signal::Watch(RemoteWatcher)
//!                                                         (unknown target: NotFound now)
//!   fire(id)  ◀── $sys.Stopped{id, target, reason} ─────── target's final stop
//!   peer_lost(location) fires the entries still waiting, with Disconnected
//!
//!   $sys.Stop{target, graceful} ──────────────────────────▶ stop / stop_gracefully
//!   $sys.Lookup{name} (ask) ──────────────────────────────▶ ActorId, or NotFound / NotExposed
//!   $sys.Spawn{kind, name, args} (ask; see spawn.rs) ─────▶ ActorId, or a SpawnRefusal
//! ```
//!
//! A `Stopped` notice is sent with the stopped actor as its sender, so it travels in the
//! same (sender, recipient) flow as that actor's messages to the watcher and arrives after
//! them. A link is a watch in each direction: the watcher's side also registers a
//! `RemoteWatcher` of its own, whose notice carries no id and fires the target proc's
//! matching link-back entry.
//!
//! [`SYSTEM_PREFIX`]: crate::SYSTEM_PREFIX
//! [`Proc::deliver_remote`]: crate::Proc::deliver_remote

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::actor::{LinkDied, LinkKind, StopReason};
use crate::cell::{ErasedCell, Watcher};
use crate::dispatch::{DeliveryError, RemoteAskError, ReplySlot, refuse};
use crate::error::AskError;
use crate::id::ActorId;
use crate::proc::{Proc, ProcInner};
use crate::remote::remote_ref::ask_error;
use crate::remote::route::tell_now_or_later;
use crate::remote::watch::{WatchEntry, WatchNotify};
use crate::remote::{Outbound, RemoteAddr, RouteError};
use crate::signal::{Signal, StopRequest};

/// Register a watch or a link on an actor of the receiving proc.
pub(crate) const WATCH: &str = "$sys.Watch";
/// A watched or linked actor stopped.
pub(crate) const STOPPED: &str = "$sys.Stopped";
/// Stop an actor of the receiving proc.
pub(crate) const STOP: &str = "$sys.Stop";
/// Find an exposed actor of the receiving proc by name (an ask).
pub(crate) const LOOKUP: &str = "$sys.Lookup";

/// The actor name system messages that concern no actor of the receiving proc (a lookup,
/// a notice for a `wait_for_stop`) are addressed to; routing looks at the proc only.
pub(crate) const SYSTEM_ACTOR: &str = "$sys";

#[derive(Serialize, Deserialize)]
pub(crate) struct WatchActor {
    pub(crate) watch_id: u64,
    pub(crate) target: ActorId,
    pub(crate) watcher: RemoteAddr,
    pub(crate) kind: LinkKind,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StoppedNotice {
    /// The watcher-side entry; `None` for the link-back of a remote link.
    pub(crate) watch_id: Option<u64>,
    pub(crate) target: ActorId,
    pub(crate) watcher: ActorId,
    pub(crate) reason: StopReason,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StopActor {
    pub(crate) target: ActorId,
    pub(crate) graceful: bool,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct LookupActor {
    pub(crate) name: String,
}

/// Sends a system message from the current actor (if any) without waiting: at once if the
/// route has room, else from a task of its own. `on_fail` hears of any failure.
pub(crate) fn send<T: Serialize>(
    proc: &Proc,
    recipient: RemoteAddr,
    name: &'static str,
    message: &T,
    on_fail: impl FnOnce(RouteError) + Send + 'static,
) {
    send_from(
        proc,
        crate::runner::current_actor(),
        recipient,
        name,
        message,
        on_fail,
    );
}

/// As [`send`], with an explicit sender.
pub(crate) fn send_from<T: Serialize>(
    proc: &Proc,
    sender: Option<ActorId>,
    recipient: RemoteAddr,
    name: &'static str,
    message: &T,
    on_fail: impl FnOnce(RouteError) + Send + 'static,
) {
    let Some(route) = proc.route() else {
        on_fail(RouteError::Unroutable {
            location: recipient.location,
            reason: format!("proc {} has no route", proc.id()),
        });
        return;
    };
    let payload = match postcard::to_allocvec(message) {
        Ok(payload) => payload,
        Err(error) => {
            // Our own plain structs; failing here would be a bug, still not a panic.
            tracing::error!(name, %error, "cannot encode a system message");
            on_fail(RouteError::Closed);
            return;
        }
    };
    let outbound = Outbound {
        sender,
        recipient,
        name,
        payload,
    };
    // `on_fail` has heard of any failure, now or later.
    let _ = tell_now_or_later(route, outbound, on_fail);
}

/// Sends a system ask (already encoded) to `recipient` and decodes its reply. Errors
/// name `recipient.actor`, as the errors of any remote ask name the ref asked.
pub(crate) async fn ask<R: DeserializeOwned>(
    proc: &Proc,
    recipient: RemoteAddr,
    name: &'static str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<R, AskError> {
    let actor = recipient.actor.clone();
    let route = proc.route().ok_or_else(|| AskError::Unroutable {
        recipient: actor.clone(),
        reason: format!("proc {} has no route", proc.id()),
    })?;
    let outbound = Outbound {
        sender: crate::runner::current_actor(),
        recipient,
        name,
        payload,
    };
    let reply = route
        .ask(outbound, timeout)
        .await
        .map_err(|error| ask_error(actor.clone(), error))?;
    postcard::from_bytes(&reply).map_err(|error| AskError::Decode {
        recipient: actor,
        reason: error.to_string(),
    })
}

/// Registers a remote watch (or the watcher's half of a link) of `target` and sends the
/// registration. `watcher` is the watching actor, `None` for a `wait_for_stop`. Returns
/// the entry's id; when the watch cannot even be sent, it has already fired with
/// [`StopReason::Disconnected`].
pub(crate) fn watch(
    proc: &Proc,
    target: RemoteAddr,
    kind: LinkKind,
    notify: WatchNotify,
    watcher: Option<ActorId>,
) -> WatchGuard {
    let watches = &proc.inner.watches;
    let Some(location) = proc.local_location() else {
        WatchEntry {
            target,
            kind,
            notify,
        }
        .fire(StopReason::Disconnected);
        return WatchGuard::fired();
    };
    let watcher = RemoteAddr {
        actor: watcher.unwrap_or_else(|| ActorId::new(proc.id().clone(), SYSTEM_ACTOR, 0)),
        location,
    };
    let recipient = target.clone();
    let id = watches.insert(WatchEntry {
        target,
        kind,
        notify,
    });
    let request = WatchActor {
        watch_id: id,
        target: recipient.actor.clone(),
        watcher,
        kind,
    };
    let weak = Arc::downgrade(&proc.inner);
    send(proc, recipient, WATCH, &request, move |error| {
        tracing::debug!(%error, "remote watch not sent; it fires as disconnected");
        if let Some(inner) = weak.upgrade() {
            inner.watches.fire(id, StopReason::Disconnected);
        }
    });
    WatchGuard {
        proc: Arc::downgrade(&proc.inner),
        id: Some(id),
    }
}

/// Takes a watch out of the table when dropped (for a `wait_for_stop` that is cancelled);
/// [`WatchGuard::keep`] leaves it there for a watching actor.
pub(crate) struct WatchGuard {
    proc: Weak<ProcInner>,
    id: Option<u64>,
}

impl WatchGuard {
    fn fired() -> Self {
        WatchGuard {
            proc: Weak::new(),
            id: None,
        }
    }

    /// Leaves the watch registered for good.
    pub(crate) fn keep(mut self) {
        self.id = None;
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let (Some(id), Some(inner)) = (self.id, self.proc.upgrade()) {
            inner.watches.remove(id);
        }
    }
}

/// A watcher in another proc, registered on a local actor: its stop travels back as a
/// `Stopped` notice.
pub(crate) struct RemoteWatcher {
    pub(crate) proc: Weak<ProcInner>,
    pub(crate) watcher: RemoteAddr,
    /// The watcher-side entry; `None` for the link-back of a remote link.
    pub(crate) watch_id: Option<u64>,
}

impl Watcher for RemoteWatcher {
    fn watcher_id(&self) -> &ActorId {
        &self.watcher.actor
    }

    fn deliver_link_died(&self, died: LinkDied) -> bool {
        let Some(inner) = self.proc.upgrade() else {
            return false;
        };
        let proc = Proc { inner };
        let notice = StoppedNotice {
            watch_id: self.watch_id,
            target: died.id.clone(),
            watcher: self.watcher.actor.clone(),
            reason: died.reason,
        };
        let watcher = self.watcher.actor.clone();
        // Sent as the stopped actor, so it follows that actor's messages to the watcher.
        send_from(
            &proc,
            Some(died.id),
            self.watcher.clone(),
            STOPPED,
            &notice,
            move |error| {
                tracing::debug!(%watcher, %error, "stop notice to a remote watcher not sent");
            },
        );
        true
    }
}

impl Proc {
    /// Handles a system message; called by `deliver_remote` for names with the prefix.
    pub(crate) fn deliver_system(
        &self,
        message: &str,
        payload: &[u8],
        reply: Option<ReplySlot>,
    ) -> Result<(), DeliveryError> {
        match (message, reply) {
            (WATCH, None) => {
                self.on_watch(decode::<WatchActor>(WATCH, payload)?);
                Ok(())
            }
            (STOPPED, None) => {
                self.on_stopped(decode::<StoppedNotice>(STOPPED, payload)?);
                Ok(())
            }
            (STOP, None) => {
                self.on_stop(decode::<StopActor>(STOP, payload)?);
                Ok(())
            }
            (LOOKUP, Some(reply)) => match decode::<LookupActor>(LOOKUP, payload) {
                Ok(lookup) => {
                    reply.answer(self.on_lookup(&lookup.name));
                    Ok(())
                }
                Err(error) => {
                    reply.answer(Err(RemoteAskError::Decode {
                        message: LOOKUP.to_owned(),
                        reason: error.to_string(),
                    }));
                    Err(error)
                }
            },
            (super::spawn::SPAWN, Some(reply)) => self.on_spawn(payload, reply),
            (_, reply) => {
                let unknown = DeliveryError::UnknownMessage {
                    actor: SYSTEM_ACTOR.to_owned(),
                    message: message.to_owned(),
                };
                Err(refuse(reply, unknown))
            }
        }
    }

    /// The live local actor with this exact id (name, index and proc), of any type.
    fn local_actor(&self, id: &ActorId) -> Option<Arc<dyn ErasedCell>> {
        if id.proc() != self.id() {
            return None;
        }
        self.registry_cell(id.name())
            .filter(|cell| &cell.core().id == id)
    }

    fn on_watch(&self, request: WatchActor) {
        let WatchActor {
            watch_id,
            target,
            watcher,
            kind,
        } = request;
        let remote: Arc<dyn Watcher> = Arc::new(RemoteWatcher {
            proc: Arc::downgrade(&self.inner),
            watcher: watcher.clone(),
            watch_id: Some(watch_id),
        });
        let Some(cell) = self.local_actor(&target) else {
            remote.deliver_link_died(LinkDied {
                id: target,
                reason: StopReason::NotFound,
                kind,
            });
            return;
        };
        let signal = Signal::Watch {
            watcher: remote.clone(),
            kind,
        };
        let registered = cell.core().signal(signal).is_ok();
        if registered && kind == LinkKind::Link {
            // The other half of the link: the target learns of the watcher's stop, or of
            // the loss of its proc. Not for a target that has already stopped.
            self.inner.watches.insert(WatchEntry {
                target: watcher,
                kind: LinkKind::Link,
                notify: WatchNotify::Actor(cell.clone().as_watcher()),
            });
        }
        if !registered {
            // Its signal queue closes only after its reason is set: never lost.
            let reason = cell
                .core()
                .exit
                .reason()
                .cloned()
                .unwrap_or(StopReason::Stopped);
            remote.deliver_link_died(LinkDied {
                id: target,
                reason,
                kind,
            });
        }
    }

    fn on_stopped(&self, notice: StoppedNotice) {
        let fired = match notice.watch_id {
            Some(id) => self
                .inner
                .watches
                .fire_for(id, &notice.target, notice.reason),
            None => self
                .inner
                .watches
                .fire_link(&notice.target, &notice.watcher, notice.reason),
        };
        if !fired {
            tracing::debug!(target = %notice.target, "stop notice for a watch that already fired");
        }
    }

    fn on_stop(&self, request: StopActor) {
        let Some(cell) = self.local_actor(&request.target) else {
            tracing::debug!(target = %request.target, "remote stop of an actor not running here");
            return;
        };
        if request.graceful {
            cell.stop_gracefully();
        } else {
            let _ = cell.core().signals.request_stop(StopRequest::Stopped);
        }
    }

    fn on_lookup(&self, name: &str) -> Result<Vec<u8>, RemoteAskError> {
        let Some(cell) = self
            .registry_cell(name)
            .filter(|cell| !cell.core().exit.is_finished())
        else {
            return Err(RemoteAskError::NotFound {
                actor: name.to_owned(),
            });
        };
        if !self.exposures().contains_key(name) {
            return Err(RemoteAskError::NotExposed {
                actor: name.to_owned(),
            });
        }
        postcard::to_allocvec(&cell.core().id).map_err(|error| RemoteAskError::Encode {
            message: LOOKUP.to_owned(),
            reason: error.to_string(),
        })
    }
}

pub(crate) fn decode<T: DeserializeOwned>(
    name: &'static str,
    payload: &[u8],
) -> Result<T, DeliveryError> {
    postcard::from_bytes(payload).map_err(|error| DeliveryError::Decode {
        message: name,
        reason: error.to_string(),
    })
}
