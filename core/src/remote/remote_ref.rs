//! The remote arms of [`ActorRef`](crate::ActorRef)'s methods: encode with the actor
//! type's codec table, send through the route of the proc the ref belongs to, and map
//! route outcomes to the same errors as local sends.

use std::any::TypeId;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::actor::{Handler, LinkKind, StopReason};
use crate::dispatch::RemoteAskError;
use crate::error::{AskError, TellError, TryTellError, Undeliverable, UndeliverableReason};
use crate::id::ActorId;
use crate::observer::WaitEdge;
use crate::proc::{Proc, ProcInner};
use crate::remote::codecs::{MessageCodec, RemoteCodecs};
use crate::remote::route::tell_now_or_later;
use crate::remote::system::{self, StopActor};
use crate::remote::watch::WatchNotify;
use crate::remote::{Outbound, RemoteAddr, RemoteRoute, RouteError, RouteTell};

/// The target of a remote ref: where the actor is, which proc's route reaches it, and how
/// its actor type's messages are encoded.
pub(crate) struct RemoteTarget {
    pub(crate) addr: RemoteAddr,
    /// Weak: a ref kept somewhere must not keep its proc alive.
    pub(crate) proc: Weak<ProcInner>,
    pub(crate) codecs: Arc<RemoteCodecs>,
}

/// A tell encoded, with the route to send it on.
struct Prepared {
    name: &'static str,
    payload: Vec<u8>,
    route: Arc<dyn RemoteRoute>,
}

impl RemoteTarget {
    fn recipient(&self) -> ActorId {
        self.addr.actor.clone()
    }

    fn codec<M: 'static>(&self) -> Option<&MessageCodec> {
        self.codecs.by_type.get(&TypeId::of::<M>())
    }

    /// The proc this ref belongs to and its route, or why there is none.
    fn route(&self) -> Result<(Proc, Arc<dyn RemoteRoute>), String> {
        let inner = self
            .proc
            .upgrade()
            .ok_or_else(|| "the proc of this ref is gone".to_owned())?;
        let proc = Proc { inner };
        let route = proc
            .route()
            .ok_or_else(|| format!("proc {} has no route", proc.id()))?;
        Ok((proc, route))
    }

    /// The wire name and postcard bytes of `msg`.
    fn encode<M: 'static>(&self, msg: &M) -> Result<(&'static str, Vec<u8>), TellError> {
        let codec = self.codec::<M>().ok_or_else(|| TellError::NotRemote {
            recipient: self.recipient(),
            message_type: std::any::type_name::<M>(),
        })?;
        let payload = (codec.encode)(msg).map_err(|reason| TellError::Encode {
            recipient: self.recipient(),
            message_type: std::any::type_name::<M>(),
            reason,
        })?;
        Ok((codec.name, payload))
    }

    fn outbound(&self, name: &'static str, payload: Vec<u8>) -> Outbound {
        Outbound {
            sender: crate::runner::current_actor(),
            recipient: self.addr.clone(),
            name,
            payload,
        }
    }

    fn tell_error(&self, error: RouteError) -> TellError {
        match error {
            RouteError::Disconnected { .. } => TellError::Disconnected {
                recipient: self.recipient(),
            },
            other => TellError::Unroutable {
                recipient: self.recipient(),
                reason: other.to_string(),
            },
        }
    }

    /// Hands a message that could not be sent to the undeliverable handler of the proc
    /// this ref belongs to, and returns the error for the caller.
    fn undeliverable<M: Send + 'static>(&self, msg: M, error: TellError) -> TellError {
        let undeliverable = Undeliverable {
            recipient: self.recipient(),
            message_type: std::any::type_name::<M>(),
            reason: UndeliverableReason::RemoteSendFailed(error.clone()),
            message: Box::new(msg),
        };
        match self.proc.upgrade() {
            Some(proc) => proc.undeliverable(undeliverable),
            None => tracing::warn!(
                recipient = %undeliverable.recipient,
                message_type = undeliverable.message_type,
                reason = %undeliverable.reason,
                "remote message undeliverable after its proc was dropped"
            ),
        }
        error
    }

    /// The common first step of every tell: the message encoded and the route to send it
    /// on. The caller still holds the message, to hand it to the undeliverable handler on
    /// failure. The [`Outbound`] is built only as the route's argument, so it is not
    /// copied through the steps before.
    fn prepare<M: Send + 'static>(&self, msg: &M) -> Result<Prepared, TellError> {
        let (name, payload) = self.encode(msg)?;
        let (_, route) = self.route().map_err(|reason| TellError::Unroutable {
            recipient: self.recipient(),
            reason,
        })?;
        Ok(Prepared {
            name,
            payload,
            route,
        })
    }

    /// A tell, done at the call when the route needs no waiting (the common case: no
    /// future is built or boxed); otherwise the rest of it, boxed, to await. The boxed
    /// rest keeps the message to report it if the route fails later.
    pub(crate) fn tell_now<M: Send + 'static>(
        self: &Arc<Self>,
        msg: M,
    ) -> Result<Result<(), TellError>, BoxFuture<'static, Result<(), TellError>>> {
        let sent = match self.prepare(&msg) {
            Ok(Prepared {
                name,
                payload,
                route,
            }) => match route.tell(self.outbound(name, payload)) {
                RouteTell::Done(outcome) => outcome.map_err(|error| self.tell_error(error)),
                RouteTell::Waiting(waiting) => {
                    let target = Arc::clone(self);
                    return Err(Box::pin(async move {
                        match waiting.await {
                            Ok(()) => Ok(()),
                            Err(error) => {
                                let error = target.tell_error(error);
                                Err(target.undeliverable(msg, error))
                            }
                        }
                    }));
                }
            },
            Err(error) => Err(error),
        };
        Ok(sent.map_err(|error| self.undeliverable(msg, error)))
    }

    pub(crate) fn try_tell<M: Send + 'static>(&self, msg: M) -> Result<(), TryTellError<M>> {
        let sent = match self.prepare(&msg) {
            Ok(Prepared {
                name,
                payload,
                route,
            }) => match route.try_tell(self.outbound(name, payload)) {
                Ok(()) => Ok(()),
                Err((RouteError::Full, _)) => {
                    return Err(TryTellError::Full {
                        recipient: self.recipient(),
                        message: msg,
                    });
                }
                Err((error, _)) => Err(self.tell_error(error)),
            },
            Err(error) => Err(error),
        };
        sent.map_err(|error| TryTellError::Remote(self.undeliverable(msg, error)))
    }

    pub(crate) fn send_unbounded<M: Send + 'static>(
        self: &Arc<Self>,
        msg: M,
    ) -> Result<(), TellError> {
        let (outbound, route) = match self.prepare(&msg) {
            Ok(Prepared {
                name,
                payload,
                route,
            }) => (self.outbound(name, payload), route),
            Err(error) => return Err(self.undeliverable(msg, error)),
        };
        let target = self.clone();
        tell_now_or_later(route, outbound, move |error| {
            let error = match error {
                // Only ever immediate: a later send waits for room instead.
                RouteError::Full => TellError::Unroutable {
                    recipient: target.recipient(),
                    reason: "the route is full and no runtime runs here to wait for room"
                        .to_owned(),
                },
                error => target.tell_error(error),
            };
            tracing::debug!(%error, "unbounded remote send failed");
            target.undeliverable(msg, error)
        })
    }

    pub(crate) async fn ask<A, M>(&self, msg: M, timeout: Duration) -> Result<A::Reply, AskError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        let _edge = WaitEdge::begin(&self.addr.actor);
        let not_remote = || AskError::NotRemote {
            recipient: self.recipient(),
            message_type: std::any::type_name::<M>(),
        };
        let codec = self.codec::<M>().ok_or_else(not_remote)?;
        let decode = codec.decode_reply.ok_or_else(not_remote)?;
        let payload = (codec.encode)(&msg).map_err(|reason| AskError::Encode {
            recipient: self.recipient(),
            reason,
        })?;
        drop(msg);
        let (proc, route) = self.route().map_err(|reason| AskError::Unroutable {
            recipient: self.recipient(),
            reason,
        })?;
        let reply = route
            .ask(self.outbound(codec.name, payload), timeout)
            .await
            .map_err(|error| ask_error(self.recipient(), error))?;
        // Refs inside the reply resolve against the proc that asked.
        let reply = proc
            .decoding(|| decode(&reply))
            .map_err(|reason| AskError::Decode {
                recipient: self.recipient(),
                reason,
            })?;
        match reply.downcast::<A::Reply>() {
            Ok(reply) => Ok(*reply),
            Err(_) => Err(AskError::Decode {
                recipient: self.recipient(),
                reason: format!(
                    "the reply decoder did not yield {}",
                    std::any::type_name::<A::Reply>()
                ),
            }),
        }
    }

    /// Sends a stop request to the actor's proc; a failure is only logged, as a local
    /// `stop` of a stopped actor reports nothing either.
    pub(crate) fn request_stop(&self, graceful: bool) {
        let request = StopActor {
            target: self.recipient(),
            graceful,
        };
        match self.route() {
            Ok((proc, _)) => system::send(
                &proc,
                self.addr.clone(),
                system::STOP,
                &request,
                |error| tracing::debug!(%error, "remote stop request not sent"),
            ),
            Err(reason) => {
                tracing::debug!(actor = %self.addr, %reason, "remote stop request not sent")
            }
        }
    }

    pub(crate) async fn wait_for_stop(&self) -> StopReason {
        let Some(inner) = self.proc.upgrade() else {
            return StopReason::Disconnected;
        };
        let proc = Proc { inner };
        let (waiter, stopped) = oneshot::channel();
        let watch = system::watch(
            &proc,
            self.addr.clone(),
            LinkKind::Watch,
            WatchNotify::Waiter(waiter),
            None,
        );
        // Dropping this future drops the guard, which takes the watch out of the table.
        let _guard = watch;
        drop(proc);
        stopped.await.unwrap_or(StopReason::Disconnected)
    }
}

/// The local form of a remote ask's failure, for the ref to `recipient`.
pub(crate) fn ask_error(recipient: ActorId, error: RemoteAskError) -> AskError {
    match error {
        RemoteAskError::NotFound { .. } => AskError::NotFound { recipient },
        RemoteAskError::NotExposed { .. } => AskError::NotExposed { recipient },
        RemoteAskError::UnknownMessage { message, .. } => {
            AskError::Unhandled { recipient, message }
        }
        RemoteAskError::Decode { reason, .. } => AskError::Decode { recipient, reason },
        RemoteAskError::Encode { reason, .. } => AskError::Encode { recipient, reason },
        RemoteAskError::Closed { .. } | RemoteAskError::Abandoned => AskError::Closed { recipient },
        RemoteAskError::Panicked { message, .. } => AskError::Panicked { recipient, message },
        RemoteAskError::Timeout { timeout_ms } => AskError::Timeout {
            recipient,
            timeout_ms,
        },
        RemoteAskError::Disconnected { .. } => AskError::Disconnected { recipient },
        RemoteAskError::Unroutable { reason } => AskError::Unroutable { recipient, reason },
    }
}
