//! Proxy attach, the dialing side: a proc of this gateway attaches through a remote
//! gateway and is then reached at that gateway's location under its own id.
//!
//! This gateway dials the remote one (a connection of its own, not one of the transport
//! manager's, so that requests arriving on it can be answered on it), and asks it to
//! attach the proc. The remote gateway then forwards every envelope for the proc's id
//! over that connection; they arrive here and are delivered to the proc, which is also
//! attached here. Dropping the [`ProxyAttachment`] closes the connection, and the remote
//! gateway drops its entry.

use plexus_core::{Location, Proc};
use plexus_transport::{Dest, WireBuilder, perform_handshake};

use crate::error::ProxyError;
use crate::gateway::{Attachment, Gateway};
use crate::link::Link;
use crate::protocol;
use crate::wires::SchemeWireBuilder;

/// Keeps a proc attached here and through a remote gateway; see
/// [`Gateway::attach_through`].
#[must_use = "the proc is detached when the attachment is dropped"]
pub struct ProxyAttachment {
    attachment: Attachment,
    link: std::sync::Arc<Link>,
    location: Location,
}

impl Gateway {
    /// Attaches `proc` to this gateway and, through a connection this gateway dials,
    /// to the gateway at `via`, which from then on forwards to it every envelope for its
    /// id: the proc is reachable at `via` under its own id.
    ///
    /// Fails with [`ProxyError::Attach`] when a live proc with this id is attached here,
    /// [`ProxyError::Connect`] when `via` cannot be reached, and [`ProxyError::Refused`]
    /// when the remote gateway refuses (it holds a live proc with this id) or does not
    /// answer within the config's `request_timeout`.
    pub async fn attach_through(
        &self,
        proc: &Proc,
        via: Location,
    ) -> Result<ProxyAttachment, ProxyError> {
        let attachment = self.attach(proc)?;
        let config = &self.inner.config;
        let connect_error = |reason: String| ProxyError::Connect {
            location: via.clone(),
            reason,
        };
        let builder = SchemeWireBuilder::new(config);
        let mut wires = builder
            .connect(&Dest::new(via.clone()))
            .await
            .map_err(|error| connect_error(error.to_string()))?;
        let mut wire = wires
            .pop()
            .ok_or_else(|| connect_error("the wire builder opened no wire".to_owned()))?;
        drop(wires);
        let negotiated = perform_handshake(
            &mut wire,
            self.inner.current_hello(),
            config.manager.handshake_timeout,
        )
        .await
        .map_err(|error| connect_error(error.to_string()))?;
        let link = Link::open(
            std::sync::Arc::downgrade(&self.inner),
            wire,
            negotiated,
            config.manager.connection.clone(),
            config.dest_queue_capacity,
            false,
        )
        .map_err(|error| connect_error(error.to_string()))?;
        let refused = |reason: String| ProxyError::Refused {
            location: via.clone(),
            proc: proc.id().clone(),
            reason,
        };
        let request = protocol::attach_request(proc.id())
            .ok_or_else(|| refused("the proc id cannot be encoded".to_owned()))?;
        let timeout = config.request_timeout;
        let answer = match link.connection.request(request, timeout).await {
            Ok(response) => protocol::read_response(&response).map_err(|e| e.to_string()),
            Err(plexus_transport::RequestError::FailedWith { name, payload, .. }) => {
                Err(protocol::read_failure(&name, &payload).to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        let outcome = answer.and_then(|bytes| {
            postcard::from_bytes::<Result<(), String>>(&bytes)
                .map_err(|error| format!("bad answer: {error}"))
                .and_then(|outcome| outcome)
        });
        if let Err(reason) = outcome {
            link.connection.close();
            return Err(refused(reason));
        }
        attachment.advertise(via.clone());
        tracing::info!(proc = %proc.id(), %via, "proc attached through a remote gateway");
        Ok(ProxyAttachment {
            attachment,
            link,
            location: via,
        })
    }
}

impl ProxyAttachment {
    /// The id of the attached proc.
    pub fn proc_id(&self) -> &plexus_core::ProcId {
        self.attachment.proc_id()
    }

    /// The location of the remote gateway the proc is reached through.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Whether the connection to the remote gateway still runs.
    pub fn is_connected(&self) -> bool {
        self.link.is_open()
    }

    /// Waits until the connection to the remote gateway ends, e.g. because that gateway
    /// is gone; the proc stays attached here.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn disconnected(&self) {
        let _ = self.link.connection.closed().await;
    }

    /// Detaches the proc here and through the remote gateway; the same as dropping it.
    pub fn detach(self) {}
}

impl Drop for ProxyAttachment {
    fn drop(&mut self) {
        self.link.connection.close();
    }
}

impl std::fmt::Debug for ProxyAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyAttachment")
            .field("proc", self.proc_id())
            .field("via", &self.location)
            .field("connected", &self.is_connected())
            .finish()
    }
}
