//! Dest-keyed transport managers, wires, the connection worker and flow control.
//!
//! This first part holds what connecting to a destination needs (design section 6):
//!
//! - [`Dest`]: the key for where envelopes go, a [`Location`](plexus_core::Location).
//! - [`Backoff`]: exponential backoff with jitter between failed attempts.

mod backoff;
mod dest;

pub use backoff::{Backoff, BackoffConfig};
pub use dest::Dest;
