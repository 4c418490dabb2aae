//! Dest-keyed transport managers, wires, the connection worker and flow control.
//!
//! This first part holds what connecting to a destination needs (design section 6):
//!
//! - [`Dest`]: the key for where envelopes go, a [`Location`](plexus_core::Location).
//! - [`wire`]: [`Wire`]s, the byte streams to a peer; the [`WireBuilder`] that dials them
//!   and the [`WireListener`] that accepts them, built in for TCP, unix sockets (feature
//!   `unix`) and in-process duplex pairs ([`InprocNetwork`]).
//! - [`Backoff`]: exponential backoff with jitter between failed attempts.
//! - [`ConnectOnce`]: one connection attempt per destination however many callers want
//!   it at once, with bounded waits, a drop guard for cancelled attempts and backoff.
//!
//! # Feature flags
//!
//! - `unix`: unix domain socket wires (`UnixWireBuilder`, `UnixWireListener`); on other
//!   platforms it has no effect.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
pub mod connect_once;
mod dest;
pub mod wire;

pub use backoff::{Backoff, BackoffConfig};
pub use connect_once::{ConnectError, ConnectOnce, ConnectOnceConfig, Phase};
pub use dest::Dest;
pub use wire::{
    DEFAULT_CONNECT_TIMEOUT, InprocConfig, InprocListener, InprocNetwork, TcpConfig,
    TcpWireBuilder, TcpWireListener, Wire, WireBuilder, WireError, WireIo, WireListener,
};
#[cfg(all(unix, feature = "unix"))]
pub use wire::{UnixConfig, UnixWireBuilder, UnixWireListener};
