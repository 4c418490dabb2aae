//! The gateway as the flow-control target of its connections (design 3.4): envelopes that
//! peers send to attached procs are admitted against their flow's credit by the
//! transport's flow receiver, which hands them here without waiting.
//!
//! An actor whose mailbox is full takes one more envelope (the decoded message waits in
//! the gateway's ingress queue for that actor, pushed by its own task); from then on
//! its envelopes are refused as `Full`, so they wait in their flow's queue in the
//! transport, bounded by the window, and the senders run out of credit instead of the
//! connection stalling. [`FlowTarget::wait_for_room`] resolves when the ingress queue
//! of that actor is drained.

use std::future::Future;
use std::sync::Weak;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{DeliveryError, RemoteAskError};
use plexus_transport::{ConnectionRef, FlowCache, FlowError, FlowTarget, Refused, Room};

use crate::error::PostError;
use crate::gateway::{Inner, Target};
use crate::link::{ReplyPath, reply_on};

/// The flow target of every connection of one gateway.
pub(crate) struct GatewayTarget {
    pub(crate) gateway: Weak<Inner>,
}

impl FlowTarget for GatewayTarget {
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
        self.take(envelope, None, None)
    }

    fn try_deliver_from(
        &self,
        envelope: NetworkEnvelope,
        from: &ConnectionRef,
    ) -> Result<(), Refused> {
        self.take(envelope, Some(from), None)
    }

    fn try_deliver_cached(
        &self,
        envelope: NetworkEnvelope,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        self.take(envelope, None, Some(cache))
    }

    fn try_deliver_from_cached(
        &self,
        envelope: NetworkEnvelope,
        from: &ConnectionRef,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        self.take(envelope, Some(from), Some(cache))
    }

    fn wait_for_room(&self, recipient: &Recipient) -> impl Future<Output = Room> + Send {
        let inner = self.gateway.upgrade();
        let recipient = recipient.clone();
        async move {
            let (Some(inner), Recipient::Actor(actor)) = (inner, recipient) else {
                return Room::Gone;
            };
            match inner.target(actor.proc()) {
                Some(Target::Local(_)) => {
                    let drained = inner.ingress.drained(&actor);
                    drop(inner);
                    drained.await;
                    Room::Available
                }
                Some(Target::Proxy(link)) => {
                    drop(inner);
                    match link.tells.reserve().await {
                        Ok(_permit) => Room::Available,
                        Err(_) => Room::Gone,
                    }
                }
                None => Room::Gone,
            }
        }
    }

    fn undeliverable(&self, envelope: NetworkEnvelope, reason: &FlowError) {
        if let Some(inner) = self.gateway.upgrade() {
            let recipient = envelope.recipient.clone();
            tracing::debug!(%recipient, %reason, "admitted envelope cannot be delivered");
            inner.bounce(envelope, PostError::BrokenLink { recipient });
        }
    }
}

impl GatewayTarget {
    /// Takes one admitted envelope: delivered, parked, refused as full, or gone.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value, as the transport's trait requires"
    )]
    fn take(
        &self,
        envelope: NetworkEnvelope,
        from: Option<&ConnectionRef>,
        cache: Option<&mut FlowCache>,
    ) -> Result<(), Refused> {
        let Some(inner) = self.gateway.upgrade() else {
            return Err(Refused::Gone(envelope));
        };
        let group_request = match (&envelope.kind, &envelope.recipient) {
            (EnvelopeKind::RequestAll { id }, _)
            | (EnvelopeKind::Request { id }, Recipient::Group(_)) => Some(*id),
            _ => None,
        };
        if let (Some(id), Some(from)) = (group_request, from) {
            // Consumed here, so its credit comes back; never handed to an actor as a tell.
            let reply = reply_on(&ReplyPath::Connection(from.clone()), &envelope, id);
            reply(Err(crate::protocol::group_request_refused(&envelope)));
            return Ok(());
        }
        let Recipient::Actor(actor) = &envelope.recipient else {
            return Err(Refused::Gone(envelope));
        };
        let request = match envelope.kind {
            EnvelopeKind::Request { id } => Some(id),
            _ => None,
        };
        // A flow has one recipient, so its cache holds that recipient's proc and exposure.
        let (target, exposures) = match cache {
            Some(cache) => match inner.target_cached(actor.proc(), cache) {
                Some((target, exposures)) => (Some(target), exposures),
                None => (None, None),
            },
            None => (inner.target(actor.proc()), None),
        };
        let target = match target {
            Some(target) => target,
            None => {
                if let (Some(id), Some(from)) = (request, from) {
                    // Answered here with the reason and consumed (its credit comes back):
                    // refusing it as gone would make the connection answer a bare
                    // `Failed` too, on its control lane, which the writer sends first, so
                    // the asker would see a decode failure instead of `NotFound` (see
                    // `Inner::receive_request`).
                    let reply = reply_on(&ReplyPath::Connection(from.clone()), &envelope, id);
                    reply(Err(RemoteAskError::NotFound {
                        actor: actor.to_string(),
                    }));
                    return Ok(());
                }
                let reason = format!("proc {} is not attached to this gateway", actor.proc());
                inner.refuse_back(&envelope, &reason, from);
                return Err(Refused::Gone(envelope));
            }
        };
        match (target, request, from) {
            (Target::Local(entry), _, _) => {
                if inner.ingress.is_waiting(actor) {
                    return Err(Refused::Full(envelope));
                }
                let reply = match (request, from) {
                    (Some(id), Some(from)) => Some(reply_on(
                        &ReplyPath::Connection(from.clone()),
                        &envelope,
                        id,
                    )),
                    _ => None,
                };
                inner.count_delivered();
                let (name, payload) = (&envelope.name, &envelope.payload);
                let delivered = match exposures {
                    Some(exposures) => entry
                        .proc
                        .deliver_remote_cached(exposures, actor, name, payload, reply),
                    None => entry.proc.deliver_remote_to(actor, name, payload, reply),
                };
                match delivered {
                    Ok(()) => Ok(()),
                    Err(DeliveryError::Full { pending }) => {
                        // One message per actor waits in the gateway; the rest wait in
                        // their flows, refused as `Full` until this one is pushed.
                        if let Err(error) = inner.ingress.park_pending(&entry.proc, actor, *pending)
                        {
                            inner.refuse_back(&envelope, &error, from);
                            inner.bounce(envelope, error);
                        }
                        Ok(())
                    }
                    Err(source) => {
                        // An ask has its answer already; a tell is reported here. The
                        // envelope is consumed either way, so its credit comes back.
                        if request.is_none() {
                            inner.refuse_back(&envelope, &source, from);
                            inner.bounce(
                                envelope,
                                PostError::Delivery {
                                    proc: entry.proc.id().clone(),
                                    source,
                                },
                            );
                        }
                        Ok(())
                    }
                }
            }
            (Target::Proxy(link), Some(id), Some(from)) => {
                inner.relay_request(link, envelope, id, ReplyPath::Connection(from.clone()));
                Ok(())
            }
            (Target::Proxy(link), _, _) => match inner.forward_to_link(&link, envelope) {
                Ok(()) => Ok(()),
                Err(envelope) => Err(Refused::Full(envelope)),
            },
        }
    }
}
