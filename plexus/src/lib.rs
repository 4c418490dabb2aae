//! plexus: actors that talk across tasks, processes and hosts through one API.
//!
//! This facade re-exports the layers; it adds no logic of its own. The actor runtime
//! (`plexus-core`) is always present at the crate root; with the `remote` feature (on by
//! default) the same [`ActorRef`] reaches actors in other processes and on other hosts
//! through a [`Gateway`].
//!
//! ```
//! use plexus::{Actor, Context, Handler, Proc, ProcId};
//!
//! struct Echo;
//! impl Actor for Echo {}
//! impl Handler<String> for Echo {
//!     type Reply = String;
//!     async fn handle(&mut self, text: String, _ctx: &mut Context<Self>) -> String {
//!         text
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let proc = Proc::new(ProcId::unique("facade"));
//! let echo = proc.spawn("echo", Echo)?;
//! assert_eq!(echo.ask("hi".to_owned()).await?, "hi");
//! # Ok(()) }
//! ```
//!
//! # Remote actors
//!
//! A proc attached to a gateway that serves a location is reachable from other
//! processes; refs to its actors travel inside messages. See the `cluster` example
//! (`cargo run --release --example cluster`) for three processes used as one program,
//! and `two_procs` for two procs of one process sharing a gateway.
//!
//! # Feature flags
//!
//! - `remote` (default): [`gateway`], [`transport`] and [`codec`], with [`Gateway`] and
//!   its settings at the crate root.
//! - `tcp` (default): the TCP wire types at the crate root (TCP is the transport's
//!   built-in wire).
//! - `unix`: unix domain socket wires and `unix://` locations.
//! - `lz4`: lz4 frame compression, used when both ends of a connection support it.
//! - `monitor`: [`monitor`], per-actor monitors, snapshots, the wait-for graph and
//!   deadlock detection (`plexus-monitor`).
//! - `metrics`: the monitor exports mailbox depth, handled messages and handler time
//!   through the `metrics` facade (implies `monitor`).
//! - `full`: every feature above.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use plexus_core::*;

/// The network envelope, its framing and message names (`plexus-codec`).
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use plexus_codec as codec;

/// Dest-keyed transport managers, wires, the connection worker and flow control
/// (`plexus-transport`).
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use plexus_transport as transport;

/// Gateways: procs attach, ingress is demultiplexed by proc id, egress is routed out
/// (`plexus-gateway`).
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use plexus_gateway as gateway;

#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use plexus_gateway::{
    Attachment, Gateway, GatewayConfig, GatewayError, ServeHandle, WeakGateway,
};

#[cfg(feature = "tcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
pub use plexus_transport::{TcpConfig, TcpWireBuilder, TcpWireListener};

#[cfg(all(unix, feature = "unix"))]
#[cfg_attr(docsrs, doc(cfg(feature = "unix")))]
pub use plexus_transport::{UnixConfig, UnixWireBuilder, UnixWireListener};

/// Per-actor monitors, snapshots, the wait-for graph and deadlock detection.
#[cfg(feature = "monitor")]
#[cfg_attr(docsrs, doc(cfg(feature = "monitor")))]
pub use plexus_monitor as monitor;
