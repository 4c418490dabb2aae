//! The plexus actor runtime: procs, actors, typed refs, mailboxes, tell/ask, supervision
//! and links.
//!
//! A [`Proc`] spawns actors. An actor is a type implementing [`Actor`] plus one
//! [`Handler`] per message type it accepts; it is reached through an [`ActorRef`], which
//! can [`tell`](ActorRef::tell) (wait for mailbox room), [`try_tell`](ActorRef::try_tell)
//! (fail fast with `Full`), [`ask`](ActorRef::ask) (await the typed reply) and stop it.
//! Actors spawned with [`Context::spawn_child`] are supervised: restarted according to
//! their [`Restart`] policy and their parent's [`Supervision`], keeping their id and refs.
//! [`Context::spawn_remote_child`] supervises a child that runs on another proc the same
//! way; [`RemoteChild`] follows it across restarts and moves.
//!
//! ```
//! use plexus_core::{Actor, Context, Handler, Proc, ProcId};
//!
//! struct Greeter;
//! impl Actor for Greeter {}
//!
//! struct Greet(String);
//! impl Handler<Greet> for Greeter {
//!     type Reply = String;
//!     async fn handle(&mut self, Greet(name): Greet, _ctx: &mut Context<Self>) -> String {
//!         format!("hello, {name}")
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let proc = Proc::new(ProcId::unique("example"));
//! let greeter = proc.spawn("greeter", Greeter)?;
//! assert_eq!(greeter.ask(Greet("plexus".into())).await?, "hello, plexus");
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! - Messages from one sender to one actor are handled in send order.
//! - Every ask ends with the reply or a typed [`AskError`].
//! - A tell that cannot be delivered reaches the proc's undeliverable handler.
//! - A panic in a handler is caught and becomes a [`StopReason`]; the process survives.
//! - A watch fires exactly once, after every message the watched actor sent before it
//!   stopped.

mod actor;
mod actor_ref;
mod cell;
mod context;
mod conversation;
mod dispatch;
mod envelope;
mod error;
mod id;
mod mailbox;
mod observer;
mod proc;
mod remote;
mod runner;
mod signal;
mod supervision;

pub use actor::{Actor, BoxError, Handler, LinkDied, LinkKind, PanicError, StopReason};
pub use actor_ref::{ActorRef, WeakActorRef};
pub use context::{Context, TaskHandle};
pub use conversation::{
    Compensation, CompletedTurn, Conversation, ConversationBuilder, ConversationError,
    ConversationPhase, ConversationReply, ConversationState, CrashPolicy, CrashReport, ExitNotice,
    Liveness, Participant, ParticipantExit, ParticipantState, RemoteParticipant, Routing, Turn,
};
pub use dispatch::{
    DeliveryError, ExposeError, ExposureCache, PendingDelivery, RemoteAskError, RemoteHandlers,
    RemoteReply,
};
pub use error::{
    AskError, SpawnError, TellError, TryTellError, Undeliverable, UndeliverableReason,
};
pub use id::{ActorId, Location, ParseError, ProcAddr, ProcId};
pub use mailbox::{DEFAULT_MAILBOX_CAPACITY, Mailbox, MailboxGauge};
pub use observer::{ActorInfo, ActorProbe, ActorStatus, Observer};
pub use proc::{Proc, ProcBuilder};
pub use remote::{
    DEFAULT_SPAWN_TIMEOUT, Outbound, Placement, RegisterSpawnableError, RemoteActor, RemoteAddr,
    RemoteChild, RemoteChildSpec, RemoteMessage, RemoteRoute, RemoteSpawnError, RouteError,
    RouteTell, SYSTEM_PREFIX, SpawnRefusal, UNBOUNDED_ASK, UndeliveredRemote,
};
pub use supervision::{ChildSpec, Restart, Strategy, Supervision};
