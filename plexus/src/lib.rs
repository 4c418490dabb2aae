//! plexus: actors that talk across tasks, processes and hosts through one API.
//!
//! This facade re-exports the layers; it adds no logic of its own.

pub use plexus_core::*;
