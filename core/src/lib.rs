//! The plexus actor runtime: procs, actors, typed refs, mailboxes, tell/ask, supervision
//! and links.

mod id;
mod remote;

pub use id::{ActorId, Location, ParseError, ProcAddr, ProcId};
pub use remote::RemoteMessage;
