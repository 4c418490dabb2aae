//! The gateway's side of core's remote seam: the [`RemoteRoute`] installed on every proc
//! at attach (and removed at detach), through which the proc's remote refs send.
//!
//! A message for an actor of a proc attached to the same gateway is delivered there
//! directly: the route goes through [`Gateway::send_to`](crate::Gateway::send_to) /
//! [`request_to`](crate::Gateway::request_to), which never touch the network for an
//! attached proc, whatever location the ref carries.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use plexus_codec::{EnvelopeKind, MessageName, NetworkEnvelope, Recipient};
use plexus_core::{
    DeliveryError, Location, Outbound, ProcId, RemoteAskError, RemoteRoute, RouteError, RouteTell,
};

use crate::error::{PostError, RemoteRequestError};
use crate::gateway::{Attached, Gateway, Inner, TellNow};

/// The route of one attached proc.
pub(crate) struct GatewayRoute {
    pub(crate) gateway: Weak<Inner>,
    pub(crate) entry: Weak<Attached>,
    /// Advertised once the gateway is gone, so refs keep a stable location.
    pub(crate) fallback: Location,
    /// The proc this route serves: told of its tells lost after the route took them.
    pub(crate) origin: ProcId,
}

impl GatewayRoute {
    fn gateway(&self) -> Option<Gateway> {
        self.gateway.upgrade().map(|inner| Gateway { inner })
    }
}

/// The recipient's location and the envelope of `message`, as a tell or (with `Request`)
/// an ask. The location is moved out of the message rather than copied.
pub(crate) fn envelope_of(message: Outbound, kind: EnvelopeKind) -> (Location, NetworkEnvelope) {
    let envelope = NetworkEnvelope {
        sender: message.sender,
        recipient: Recipient::Actor(message.recipient.actor),
        trace_id: 0,
        hop_limit: plexus_codec::DEFAULT_HOP_LIMIT,
        kind,
        name: MessageName::from_static(message.name),
        payload: Bytes::from(message.payload),
    };
    (message.recipient.location, envelope)
}

/// What a tell's sender is told when the gateway refused it.
fn route_error(location: &Location, error: PostError) -> Option<RouteError> {
    let unroutable = |reason: String| RouteError::Unroutable {
        location: location.clone(),
        reason,
    };
    Some(match error {
        // The recipient's proc reported it to its own undeliverable handler already.
        PostError::Delivery {
            source: DeliveryError::Closed { .. },
            ..
        } => return None,
        PostError::Full { .. } | PostError::LinkFull { .. } | PostError::Overloaded { .. } => {
            RouteError::Full
        }
        PostError::Transport { .. } => RouteError::Disconnected {
            location: location.clone(),
        },
        PostError::BrokenLink { .. } => RouteError::BrokenLink,
        other => unroutable(other.to_string()),
    })
}

/// What an ask's caller is told when the gateway could not get an answer.
fn ask_error(location: &Location, error: RemoteRequestError) -> RemoteAskError {
    match error {
        RemoteRequestError::Remote(error) => error,
        RemoteRequestError::Timeout { after } => RemoteAskError::Timeout {
            timeout_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        },
        // A peer that refuses connections is as gone as one whose connection dropped.
        RemoteRequestError::Disconnected { .. }
        | RemoteRequestError::Unreachable { .. }
        | RemoteRequestError::BrokenLink => RemoteAskError::Disconnected {
            location: location.clone(),
        },
        RemoteRequestError::Unroutable { proc } => RemoteAskError::Unroutable {
            reason: format!("proc {proc} is not attached at {location}"),
        },
        RemoteRequestError::Failed => RemoteAskError::Decode {
            message: String::new(),
            reason: "the peer could not decode the request".to_owned(),
        },
        RemoteRequestError::Ignored => RemoteAskError::Abandoned,
    }
}

impl RemoteRoute for GatewayRoute {
    fn local_location(&self) -> Location {
        if let Some(via) = self
            .entry
            .upgrade()
            .and_then(|entry| entry.advertised.get().cloned())
        {
            return via;
        }
        match self.gateway() {
            Some(gateway) => gateway.default_location(),
            None => self.fallback.clone(),
        }
    }

    /// A tell that needs no waiting (delivered to an attached proc, refused, or queued
    /// on a lane whose destination is connected) is done at the call; only waiting for
    /// room, a dial or a send's outcome happens in a future.
    fn tell(&self, message: Outbound) -> RouteTell {
        let Some(gateway) = self.gateway() else {
            return RouteTell::Done(Err(RouteError::BrokenLink));
        };
        let (network, location, envelope) = match gateway.tell_now(message, &self.origin) {
            TellNow::Sent => return RouteTell::Done(Ok(())),
            TellNow::Done(location, outcome) => {
                return RouteTell::Done(
                    outcome.or_else(|error| route_error(&location, error).map_or(Ok(()), Err)),
                );
            }
            TellNow::Wait(network, location, envelope) => (network, location, envelope),
        };
        let origin = self.origin.clone();
        RouteTell::waiting(async move {
            // Held so the gateway outlives the send, as for any call on it.
            let _gateway = gateway;
            match network.send(&location, envelope, Some(&origin)).await {
                Ok(()) => Ok(()),
                Err(error) => route_error(&location, error).map_or(Ok(()), Err),
            }
        })
    }

    fn try_tell(&self, message: Outbound) -> Result<(), (RouteError, Outbound)> {
        let Some(gateway) = self.gateway() else {
            return Err((RouteError::BrokenLink, message));
        };
        // Kept to hand back on `Full`; the envelope takes the payload.
        let kept = message.clone();
        let (location, envelope) = envelope_of(message, EnvelopeKind::Regular);
        match gateway.post_from(&location, envelope, Some(&self.origin)) {
            Ok(()) => Ok(()),
            Err(error) => match route_error(&location, error) {
                None => Ok(()),
                Some(error) => Err((error, kept)),
            },
        }
    }

    fn ask(
        &self,
        message: Outbound,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteAskError>> {
        let gateway = self.gateway();
        let origin = self.origin.clone();
        Box::pin(async move {
            let Some(gateway) = gateway else {
                return Err(RemoteAskError::Unroutable {
                    reason: "the gateway of this proc is gone".to_owned(),
                });
            };
            let (location, envelope) = envelope_of(message, EnvelopeKind::Request { id: 0 });
            gateway
                .request_from(&location, envelope, timeout, Some(&origin))
                .await
                .map(|reply| reply.to_vec())
                .map_err(|error| ask_error(&location, error))
        })
    }
}

/// Whether `installed` is `route` (same allocation).
pub(crate) fn is_same(installed: &Arc<dyn RemoteRoute>, route: &Arc<GatewayRoute>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(installed), Arc::as_ptr(route))
}
