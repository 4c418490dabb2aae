//! Per-actor monitors, snapshots and the wait-for graph of plexus.
//!
//! A [`Monitor`] is installed on one or more procs as their observer
//! ([`ProcBuilder::observer`](plexus_core::ProcBuilder::observer)); from then on every actor
//! spawned there is followed by an [`ActorMonitor`]: its status and stop reason, mailbox
//! kind, capacity and live depth, messages handled (in total and by type), the handler
//! running now and for how long, restarts, panics, links, supervision, and the asks it
//! awaits inside its handler.
//!
//! [`Monitor::snapshot`] turns that into a serializable [`Snapshot`]; snapshots of several
//! procs [merge](Snapshot::merge) into one, and the [`WaitForGraph`] of a live monitor, a
//! snapshot or a merge reports every wait-for cycle as a [`Deadlock`].
//! [`render_table`] shows a snapshot as text.
//!
//! [`Monitor::serve_on`] spawns a [`MonitorService`] on a proc under
//! [`MONITOR_ACTOR_NAME`]: a system actor that answers a [`SnapshotRequest`] sent as an
//! ordinary remote message, so a console reaches a monitor in another process through the
//! gateway.
//!
//! The cost per message is a pointer comparison, a relaxed load of a coarse clock and two
//! relaxed stores on the actor's own task; the registry is locked only on spawn, on stop
//! and for a snapshot.
//!
//! # Feature flags
//! - `metrics` (off by default): export mailbox depth, handled messages and handler time
//!   through the [`metrics`](https://docs.rs/metrics) facade; see the
//!   `metrics` module (present with the feature) for the metric names.
//! - `console` (off by default): the `console` module (snapshot sources, also through a
//!   gateway to monitors in other processes, the live terminal view, JSON output) and the
//!   `plexus-console` binary; adds `plexus-gateway`, `crossterm`, `tokio`, `futures` and
//!   `serde_json`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
mod graph;
mod message_types;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod monitor;
mod probe;
mod service;
mod snapshot;
mod sync;
mod table;

pub use graph::{Deadlock, MAX_DEADLOCKS, WaitForGraph};
pub use monitor::{Monitor, MonitorConfig};
pub use probe::ActorMonitor;
pub use service::{MONITOR_ACTOR_NAME, MonitorService, ServeError, SnapshotRequest};
pub use snapshot::{
    ActorSnapshot, Link, MessageCount, PendingAsk, RunningHandler, Snapshot, Totals,
};
pub use table::{TableOptions, render_table, render_table_with};
