//! Dest-keyed transport managers, wires, the connection worker and flow control.
//!
//! This crate is filled by the transport work (design section 6); until then it holds
//! only this description so that the workspace layout is in place.

pub mod connection;
pub mod flow;
pub mod handshake;
mod requests;

pub use connection::{
    ConnectionConfig, ConnectionConfigError, ConnectionError, ConnectionHandle, ConnectionStats,
    Inbound, SendError, spawn_connection,
};
pub use flow::{
    FlowConfig, FlowConfigError, FlowError, FlowEvents, FlowReceiver, FlowTarget, Received,
    RecvFlow, Refused, Room, SendFlows, SendWindow, envelope_bytes, flow_of,
};
pub use handshake::{
    Handshake, HandshakeError, Hello, MAGIC, MAX_HELLO_SIZE, MIN_FRAME_SIZE, Negotiated,
    perform_handshake, prefer_connection,
};
pub use requests::RequestError;
