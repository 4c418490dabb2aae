//! Integration tests of plexus-monitor with real procs and actors, grouped by the promise
//! they check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[cfg(feature = "console")]
mod console;
mod deadlock;
mod lifecycle;
mod mailbox;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "console")]
mod remote;
mod serde;
mod service;
