//! Integration tests of the gateway: routing between attached procs and the forwarder,
//! attachment rules, the advertised-location stack and weak handles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attach;
mod locations;
mod routing;
mod support;
mod weak;
