//! The proc-multiplexing gateway: procs attach, ingress is demultiplexed by proc id,
//! egress is routed to the forwarder.
//!
//! This crate is filled by the gateway work (design section 7); until then it holds only
//! this description so that the workspace layout is in place.
