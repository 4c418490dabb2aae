//! Per-actor monitors, snapshots, the wait-for graph and the console.
//!
//! This crate is filled by the monitor work (design section 8); until then it holds only
//! this description so that the workspace layout is in place.
