//! The proc-multiplexing gateway of plexus: procs attach, ingress is demultiplexed by
//! proc id, everything else goes to the forwarder (design section 7).
//!
//! A [`Gateway`] is the connectivity boundary of one or more procs in a process:
//! - [`Gateway::attach`] registers a [`Proc`](plexus_core::Proc); a second live proc with
//!   the same id is refused, an entry whose [`Attachment`] was dropped is replaced.
//! - [`Gateway::post`] delivers an envelope for an attached proc's actor directly, with
//!   no serialization between procs of one process, and hands every other envelope to
//!   the [`Forwarder`], or bounces it as [`PostError::Unroutable`] when isolated.
//! - [`Gateway::serve_location`] records a served location; the last one still served is
//!   the [`default_location`](Gateway::default_location), falling back in any stop order
//!   to the location reserved at construction (see [`LocationStack`]).
//! - A [`WeakGateway`] bounces envelopes with [`PostError::BrokenLink`] once the gateway
//!   is gone.
//!
//! Listening on served locations, proxy attach and `flush` come with the transport
//! wiring.

mod error;
mod gateway;
mod location;

pub use error::{AttachError, PostError};
pub use gateway::{Attachment, Forwarder, Gateway, ServeGuard, WeakGateway};
pub use location::{LocationStack, LocationToken};
