//! plexus: actors that talk across tasks, processes and hosts through one API.
//!
//! This facade re-exports the layers; it adds no logic of its own. The actor runtime
//! (`plexus-core`) is always present at the crate root.
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
//! # Feature flags
//!
//! - `monitor`: [`monitor`], per-actor monitors, snapshots, the wait-for graph and
//!   deadlock detection (`plexus-monitor`).
//! - `metrics`: the monitor exports mailbox depth, handled messages and handler time
//!   through the `metrics` facade (implies `monitor`).
//! - `full`: every feature above.
//!
//! The network layers (`remote`, `tcp`, `unix`, `lz4`) join as their crates land.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use plexus_core::*;

/// Per-actor monitors, snapshots, the wait-for graph and deadlock detection.
#[cfg(feature = "monitor")]
#[cfg_attr(docsrs, doc(cfg(feature = "monitor")))]
pub use plexus_monitor as monitor;
