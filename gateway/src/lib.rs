//! The proc-multiplexing gateway of plexus: procs attach, ingress is demultiplexed by
//! proc id, everything else goes out through the transport (design section 7).
//!
//! A [`Gateway`] is the connectivity boundary of one or more procs in a process:
//! - [`Gateway::new`] builds a networked gateway whose way out is an
//!   [`OutprocTransportManager`](plexus_transport::OutprocTransportManager) dialing by
//!   location scheme; [`Gateway::isolated`] has none; [`Gateway::global`] is the
//!   process-wide one.
//! - [`Gateway::attach`] registers a [`Proc`](plexus_core::Proc) and installs the gateway
//!   as its [`RemoteRoute`](plexus_core::RemoteRoute), so its remote `ActorRef`s tell and
//!   ask through it; a second live proc with the same id is refused, an entry whose
//!   [`Attachment`] was dropped is replaced. Destinations the transport loses become
//!   [`Proc::peer_lost`](plexus_core::Proc::peer_lost) on every attached proc.
//! - [`Gateway::post`] / [`Gateway::post_to`] deliver an envelope for an attached proc's
//!   actor directly (no serialization between procs of one process, no network) and send
//!   every other one towards its destination without waiting; [`Gateway::request_to`]
//!   does the same for asks; [`Gateway::flush`] waits until everything posted before has
//!   been delivered, handed to a wire, or bounced.
//! - Connections run flow control ([`GatewayConfig::flow`]): a full actor makes its
//!   remote senders wait for credit, and each (destination, sender, recipient) lane is
//!   sent from its own task, so one slow actor never holds up another.
//! - [`Gateway::serve`] listens on a location ([`ServeHandle`]); the last location still
//!   served is the [`default_location`](Gateway::default_location), falling back in any
//!   stop order to the location reserved at construction (see [`LocationStack`]).
//! - [`Gateway::attach_through`] attaches a proc through a remote gateway, where it is
//!   then reached under its own id ([`ProxyAttachment`]).
//! - A [`WeakGateway`] bounces envelopes with [`PostError::BrokenLink`] once the gateway
//!   is gone.
//! - Nothing vanishes without a count (design 3.5, 3.9): a tell the gateway took from a
//!   proc's route and then could not send (the dial failed, the connection was lost with
//!   it queued) or that the receiving gateway refused (a
//!   [`protocol::UNDELIVERABLE`] notice comes back) is reported to that proc's
//!   undeliverable handler with
//!   [`Proc::report_remote_undeliverable`](plexus_core::Proc::report_remote_undeliverable).
//!   What no side can count: when a peer dies, the tells already written to it and not
//!   yet handled there (at most one flow window per flow, or the connection's queue
//!   without flow control) are lost with it; a refused tell sent from outside any actor
//!   names no sender and is only logged and counted where it was refused.
//! - Typed ask errors travel as `Failed` responses carrying the postcard
//!   [`RemoteAskError`](plexus_core::RemoteAskError) (see [`protocol`]); group requests
//!   are refused with a typed `Unroutable`, and a request for a proc not attached to the
//!   gateway it reached (an earlier incarnation of a restarted proc, say) with `NotFound`.
//!
//! # Feature flags
//!
//! - `unix`: serve and dial `unix://` locations.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod egress;
mod error;
mod flow;
mod gateway;
mod ingress;
mod link;
mod location;
pub mod protocol;
mod proxy;
mod route;
mod serve;
mod wires;

pub use config::GatewayConfig;
pub use error::{AttachError, GatewayError, PostError, ProxyError, RemoteRequestError, ServeError};
pub use gateway::{Attachment, Forwarder, Gateway, GatewayStats, ServeGuard, WeakGateway};
pub use location::{LocationStack, LocationToken};
pub use proxy::ProxyAttachment;
pub use serve::ServeHandle;
