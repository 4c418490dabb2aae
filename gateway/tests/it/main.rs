//! Integration tests of the gateway: routing between attached procs and the way out,
//! attachment rules, the advertised-location stack, weak handles, two gateways over TCP
//! and `local:`, proxy attach and the flush contract.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accepted;
mod attach;
mod flow;
mod flush;
mod list;
mod locations;
mod net;
mod promises;
mod proxy;
mod remote;
mod routing;
mod serve_unwind;
mod support;
mod undeliverable;
mod weak;
