//! One connection seen from the gateway: what arrives on it is posted into the gateway,
//! requests are answered on it, and tells for a proc attached through it are sent on it.
//!
//! Every accepted connection and every connection a gateway dials to attach a proc
//! through another gateway is a [`Link`]. The connection reader hands each envelope to
//! [`LinkInbound`], which never waits: tells and requests for attached procs go to their
//! delivery (answers come back through the link's reply queue), the proxy-attach request
//! registers the proc behind this link. One task per link sends what the gateway queues
//! for it: replies first (unbounded, as many as requests admitted), then tells (bounded).

use std::sync::{Arc, Weak};

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{ProcId, RemoteAskError, RemoteReply};
use plexus_transport::{
    ConnectionConfig, ConnectionConfigError, ConnectionHandle, ConnectionRef, Inbound, Negotiated,
    SendError, TrySendError, Wire, spawn_connection, spawn_connection_with_flow,
};
use tokio::sync::mpsc;

use crate::egress::{Bounce, Outgoing};
use crate::error::PostError;
use crate::gateway::Inner;
use crate::protocol;

/// A connection and the queues of what the gateway sends on it.
pub(crate) struct Link {
    pub(crate) connection: ConnectionHandle,
    pub(crate) tells: mpsc::Sender<Outgoing>,
}

impl Link {
    /// Starts the connection over `wire` and its sending task. `accepts_proxies` says
    /// whether procs may attach through it (true on accepted connections).
    pub(crate) fn open(
        gateway: Weak<Inner>,
        wire: Wire,
        negotiated: Negotiated,
        config: ConnectionConfig,
        capacity: usize,
        accepts_proxies: bool,
    ) -> Result<Arc<Link>, ConnectionConfigError> {
        let (replies, replies_rx) = mpsc::unbounded_channel();
        let (tells, tells_rx) = mpsc::channel(capacity.max(1));
        let inbound = LinkInbound {
            gateway: gateway.clone(),
            replies: ReplyPath::Queue(replies),
            tells: tells.clone(),
            accepts_proxies,
        };
        let connection = if negotiated.local_flow.is_some() {
            let target = Arc::new(crate::flow::GatewayTarget {
                gateway: gateway.clone(),
            });
            spawn_connection_with_flow(wire, negotiated, config, inbound, target)?
        } else {
            spawn_connection(wire, negotiated, config, inbound)?
        };
        let link = Arc::new(Link {
            connection: connection.clone(),
            tells,
        });
        if let Some(inner) = gateway.upgrade() {
            inner.track(&link);
        }
        let bounce: Bounce = Arc::new(move |envelope, reason, _origin| {
            if let Some(inner) = gateway.upgrade() {
                inner.bounce(envelope, reason);
            }
        });
        tokio::spawn(send_loop(connection, replies_rx, tells_rx, bounce));
        Ok(link)
    }

    /// Whether the connection still runs.
    pub(crate) fn is_open(&self) -> bool {
        self.connection.close_reason().is_none()
    }

    /// Queues a tell for the peer without waiting.
    pub(crate) fn forward(&self, envelope: NetworkEnvelope) -> Result<(), PostError> {
        match self.tells.try_send(Outgoing::Envelope(envelope)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Outgoing::Envelope(envelope))) => {
                Err(PostError::LinkFull {
                    recipient: envelope.recipient,
                })
            }
            Err(mpsc::error::TrySendError::Closed(Outgoing::Envelope(envelope))) => {
                Err(PostError::BrokenLink {
                    recipient: envelope.recipient,
                })
            }
            Err(_) => Ok(()),
        }
    }
}

/// The sending task of a link: replies before tells, until the connection ends.
async fn send_loop(
    connection: ConnectionHandle,
    mut replies: mpsc::UnboundedReceiver<NetworkEnvelope>,
    mut tells: mpsc::Receiver<Outgoing>,
    bounce: Bounce,
) {
    loop {
        let next = tokio::select! {
            biased;
            reply = replies.recv() => reply.map(Outgoing::Envelope),
            tell = tells.recv() => tell,
            _ = connection.closed() => None,
        };
        let Some(next) = next else { break };
        match next {
            Outgoing::Flush(ack) => {
                let _ = ack.send(());
            }
            Outgoing::Envelope(envelope) | Outgoing::Acked(envelope, _) => {
                if let Err(refused) = connection.send(envelope).await {
                    let closed = matches!(refused, SendError::Closed(_));
                    let envelope = refused.into_envelope();
                    let recipient = envelope.recipient.clone();
                    bounce(envelope, PostError::BrokenLink { recipient }, None);
                    if closed {
                        break;
                    }
                }
            }
        }
    }
    // Whatever is still queued will never be sent: report the tells.
    tells.close();
    while let Ok(outgoing) = tells.try_recv() {
        if let Outgoing::Envelope(envelope) | Outgoing::Acked(envelope, _) = outgoing {
            let recipient = envelope.recipient.clone();
            bounce(envelope, PostError::BrokenLink { recipient }, None);
        }
    }
}

/// The connection reader's handler of a link. Never waits.
struct LinkInbound {
    gateway: Weak<Inner>,
    replies: ReplyPath,
    /// The link's tell queue, for a proc that attaches through this connection.
    tells: mpsc::Sender<Outgoing>,
    accepts_proxies: bool,
}

impl Inbound for LinkInbound {
    fn deliver(&self, envelope: NetworkEnvelope) {
        // The reader always calls `deliver_from`; without the connection nothing can
        // attach through it.
        self.receive(envelope, None);
    }

    fn deliver_from(&self, envelope: NetworkEnvelope, from: &ConnectionRef) {
        self.receive(envelope, Some(from));
    }
}

impl LinkInbound {
    fn receive(&self, envelope: NetworkEnvelope, from: Option<&ConnectionRef>) {
        let Some(inner) = self.gateway.upgrade() else {
            tracing::debug!(recipient = %envelope.recipient, "gateway gone, inbound envelope dropped");
            return;
        };
        match envelope.kind {
            EnvelopeKind::Request { id } if protocol::is_for_gateway(&envelope) => {
                self.control_request(&inner, id, &envelope, from);
            }
            EnvelopeKind::Request { id } => {
                inner.receive_request(envelope, id, &self.replies);
            }
            EnvelopeKind::Regular => inner.receive_tell(envelope, from),
            EnvelopeKind::RequestAll { id } => {
                let reply = reply_on(&self.replies, &envelope, id);
                reply(Err(protocol::group_request_refused(&envelope)));
            }
            _ => {
                tracing::debug!(kind = %envelope.kind, recipient = %envelope.recipient, "unexpected envelope on a link, dropped");
            }
        }
    }

    /// A request to the gateway itself: the proxy attach, or the list of attached procs.
    fn control_request(
        &self,
        inner: &Arc<Inner>,
        id: u64,
        envelope: &NetworkEnvelope,
        from: Option<&ConnectionRef>,
    ) {
        let reply = reply_on(&self.replies, envelope, id);
        if &*envelope.name == protocol::LIST_PROCS {
            match postcard::to_allocvec(&inner.attached_procs()) {
                Ok(encoded) => reply(Ok(encoded)),
                Err(error) => reply(Err(RemoteAskError::Encode {
                    message: protocol::LIST_PROCS.to_owned(),
                    reason: error.to_string(),
                })),
            }
            return;
        }
        let outcome: Result<(), String> = if &*envelope.name != protocol::ATTACH {
            Err(format!("unknown gateway request `{}`", envelope.name))
        } else if !self.accepts_proxies {
            Err("this connection does not accept attachments".to_owned())
        } else {
            match (
                postcard::from_bytes::<ProcId>(&envelope.payload),
                from.and_then(ConnectionRef::upgrade),
            ) {
                (Ok(proc), Some(connection)) => {
                    let link = Arc::new(Link {
                        connection,
                        tells: self.tells.clone(),
                    });
                    inner.attach_proxy(proc, link).map_err(|e| e.to_string())
                }
                (Err(error), _) => Err(format!("bad proc id: {error}")),
                (_, None) => Err("the connection is closing".to_owned()),
            }
        };
        match postcard::to_allocvec(&outcome) {
            Ok(encoded) => reply(Ok(encoded)),
            Err(error) => reply(Err(RemoteAskError::Encode {
                message: protocol::ATTACH.to_owned(),
                reason: error.to_string(),
            })),
        }
    }
}

/// Where the answers to requests that came on one connection go back.
#[derive(Clone)]
pub(crate) enum ReplyPath {
    /// The reply queue of a link, drained by its sending task.
    Queue(mpsc::UnboundedSender<NetworkEnvelope>),
    /// A connection of the transport manager, answered directly.
    Connection(ConnectionRef),
}

impl ReplyPath {
    /// Resolves once nothing can be answered on this path any more: the connection the
    /// requests came on has closed.
    pub(crate) async fn closed(&self) {
        match self {
            ReplyPath::Queue(queue) => queue.closed().await,
            ReplyPath::Connection(connection) => {
                let _ = connection.closed().await;
            }
        }
    }

    fn send(&self, response: NetworkEnvelope) {
        match self {
            ReplyPath::Queue(queue) => {
                if queue.send(response).is_err() {
                    tracing::debug!("connection gone, reply dropped");
                }
            }
            ReplyPath::Connection(connection) => match connection.try_send(response) {
                Ok(()) => {}
                Err(TrySendError::Full(response)) => {
                    // The writer is behind; a reply must not be lost for that, and the
                    // caller must not wait, so a task waits for room.
                    let connection = connection.clone();
                    tokio::spawn(async move {
                        if connection.send(response).await.is_err() {
                            tracing::debug!("connection gone, reply dropped");
                        }
                    });
                }
                Err(error) => tracing::debug!(%error, "reply not sent"),
            },
        }
    }
}

/// A reply callback that answers request `id` of `request` on `replies`.
pub(crate) fn reply_on(replies: &ReplyPath, request: &NetworkEnvelope, id: u64) -> RemoteReply {
    let replies = replies.clone();
    let responder = match &request.recipient {
        Recipient::Actor(actor) => Some(actor.clone()),
        _ => None,
    };
    let requester = request.sender.clone();
    let trace_id = request.trace_id;
    Box::new(move |outcome| {
        replies.send(protocol::response(
            id, responder, requester, trace_id, outcome,
        ));
    })
}
