//! Dest-keyed transport managers, wires, the connection worker and flow control.
//!
//! What is here so far (design section 6):
//!
//! - [`Dest`]: the key for where envelopes go, a [`Location`](plexus_core::Location).
//! - [`wire`]: [`Wire`]s, the byte streams to a peer; the [`WireBuilder`] that dials them
//!   and the [`WireListener`] that accepts them, built in for TCP, unix sockets (feature
//!   `unix`) and in-process duplex pairs ([`InprocNetwork`]).
//! - [`Backoff`]: exponential backoff with jitter between failed attempts.
//! - [`ConnectOnce`]: one connection attempt per destination however many callers want
//!   it at once, with bounded waits, a drop guard for cancelled attempts and backoff.
//! - [`handshake`]: the sans-IO hello exchange (magic, version ranges, capabilities,
//!   identities and launch ids, frame limits, the advertised location and flow window)
//!   and [`perform_handshake`] over a stream; [`prefer_connection`] settles simultaneous
//!   dials.
//! - [`connection`]: the worker over one stream after the handshake: a batching writer, a
//!   reader that never awaits a recipient, ping/pong with RTT, the idle timeout, requests
//!   that all fail with `Disconnected` the moment the connection ends, a control lane
//!   that never drops flow credit, and flow control on both ends
//!   ([`spawn_connection_with_flow`]); inbound handlers learn the [`ConnectionRef`] an
//!   envelope came on, to answer on it.
//! - [`manager`]: the [`OutprocTransportManager`] that dials each destination once into a
//!   [`DestTransport`] (a connection per wire, per-pair FIFO, health), keeps it healthy,
//!   publishes [`DestEvent`]s (connected, lost), adopts connections peers dial, and
//!   optionally runs flow control over a [`FlowTarget`]; the [`InprocTransportManager`]
//!   with the same interface for procs of one process, over channels.
//! - [`flow`]: the flow-control kernel: per-flow credit windows at the sender
//!   ([`SendFlows`]), and at the receiver a state machine per flow with a queue and a
//!   pusher ([`FlowReceiver`]) so that a full recipient stalls only its own senders.
//!
//! The gateway (`plexus-gateway`) is the flow target of its connections, over
//! `Proc::deliver_remote`. Not yet here: TLS wires, and the gateway accepting connections
//! through [`OutprocTransportManager::accept`] (the duplicate-connection rule) once a swap
//! of connections can keep each pair's order.
//!
//! # Feature flags
//!
//! - `unix`: unix domain socket wires (`UnixWireBuilder`, `UnixWireListener`); on other
//!   platforms it has no effect.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
pub mod connect_once;
pub mod connection;
mod dest;
pub mod flow;
pub mod handshake;
pub mod manager;
mod requests;
pub mod wire;

pub use backoff::{Backoff, BackoffConfig};
pub use connect_once::{Adopted, ConnectError, ConnectOnce, ConnectOnceConfig, Phase};
pub use connection::{
    ConnectionConfig, ConnectionConfigError, ConnectionError, ConnectionHandle, ConnectionRef,
    ConnectionStats, Inbound, SendError, TrySendError, spawn_connection,
    spawn_connection_with_flow,
};
pub use dest::Dest;
pub use flow::{
    FlowCache, FlowConfig, FlowConfigError, FlowError, FlowEvents, FlowReceiver, FlowTarget,
    Received, RecvFlow, Refused, Room, SendFlows, SendWindow, envelope_bytes, flow_of,
};
pub use handshake::{
    Handshake, HandshakeError, Hello, MAGIC, MAX_HELLO_SIZE, MIN_FRAME_SIZE, Negotiated,
    perform_handshake, prefer_connection,
};
pub use manager::{
    Adoption, DestEvent, DestTransport, DialError, InprocBindError, InprocHub,
    InprocTransportManager, ManagerConfig, OutprocTransportManager, PairSender, TransportError,
};
pub use requests::RequestError;
pub use wire::{
    DEFAULT_CONNECT_TIMEOUT, InprocConfig, InprocListener, InprocNetwork, TcpConfig,
    TcpWireBuilder, TcpWireListener, Wire, WireBuilder, WireError, WireIo, WireListener,
};
#[cfg(all(unix, feature = "unix"))]
pub use wire::{UnixConfig, UnixWireBuilder, UnixWireListener};
