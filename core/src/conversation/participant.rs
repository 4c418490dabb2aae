//! What a conversation needs from a participant, and the turn a participant answers.

use std::fmt;
use std::sync::Weak;

use futures::future::BoxFuture;

use crate::actor::{Handler, StopReason};
use crate::actor_ref::ActorRef;
use crate::error::TellError;
use crate::id::ActorId;

use super::error::ConversationError;

/// The stop reason of a remote ref given as a participant directly.
const NOT_REMOTE_TURNS: &str = "a remote ref cannot take turns; wrap it in RemoteParticipant";

/// A party a conversation can route requests to and watch for crashes.
///
/// Implemented for every local [`ActorRef`] whose actor handles
/// [`Turn<Req, Resp>`](Turn), and by [`RemoteParticipant`](crate::RemoteParticipant) for
/// an actor on another proc or host. A turn cannot cross a process, so a remote
/// [`ActorRef`] given directly counts as crashed at once, with [`StopReason::Failed`].
///
/// The trait is the seam for participants behind other refs: an implementation forwards
/// the turn's request and feeds the replies that come back into the turn's
/// [`ConversationReply`]; its [`exited`](Participant::exited) future must also resolve
/// when the connection to it is lost, which the conversation then treats as a crash.
pub trait Participant<Req, Resp>: Send + Sync + 'static {
    /// The participant's actor id.
    fn id(&self) -> &ActorId;

    /// Hands one turn to the participant, waiting for room in its mailbox. An error means
    /// it can take no more turns; the conversation learns of its exit through
    /// [`exited`](Participant::exited) and applies its crash policy to the turn then.
    ///
    /// # Cancel safety
    /// Implementations must be cancel-safe: if the future is dropped before it completes,
    /// the turn must not have been delivered, because a cancelled
    /// [`send`](crate::Conversation::send) withdraws it.
    fn deliver(&self, turn: Turn<Req, Resp>) -> BoxFuture<'_, Result<(), TellError>>;

    /// Resolves once, when the participant has stopped for good, with why. Resolves at once
    /// if it already has.
    fn exited(&self) -> BoxFuture<'static, StopReason>;
}

impl<A, Req, Resp> Participant<Req, Resp> for ActorRef<A>
where
    A: Handler<Turn<Req, Resp>>,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    fn id(&self) -> &ActorId {
        ActorRef::id(self)
    }

    fn deliver(&self, turn: Turn<Req, Resp>) -> BoxFuture<'_, Result<(), TellError>> {
        Box::pin(self.tell(turn))
    }

    fn exited(&self) -> BoxFuture<'static, StopReason> {
        if self.is_remote() {
            // A turn holds a handle into this process and never crosses one, so a remote
            // ref can take no turn: counted as a crash now rather than a turn left open.
            tracing::warn!(
                participant = %self.id(),
                "a remote ref cannot take turns; wrap it in RemoteParticipant"
            );
            return Box::pin(std::future::ready(StopReason::Failed(
                NOT_REMOTE_TURNS.to_owned(),
            )));
        }
        let participant = self.clone();
        Box::pin(async move { participant.wait_for_stop().await })
    }
}

/// Identifies one turn: one request given to one participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TurnId(pub(crate) u64);

/// Where a turn's replies go: the conversation, seen without its request type.
pub(crate) trait ReplySink<Resp>: Send + Sync {
    /// Takes one reply (if any) for `turn`; `last` finishes the turn.
    fn reply(&self, turn: TurnId, reply: Option<Resp>, last: bool)
    -> Result<(), ConversationError>;

    /// Whether `turn` still waits for an answer.
    fn is_open(&self, turn: TurnId) -> bool;
}

/// One request of a conversation, handed to one participant together with the handle to
/// answer it.
///
/// A participant actor implements `Handler<Turn<Req, Resp>>` and answers through
/// [`Turn::reply`] (one reply), or takes the [`ConversationReply`] out with
/// [`Turn::into_parts`] to stream several replies or answer later, from another message.
///
/// ```
/// use plexus_core::{Actor, Context, Handler, Turn};
///
/// struct Doubler;
/// impl Actor for Doubler {}
///
/// impl Handler<Turn<u32, u32>> for Doubler {
///     type Reply = ();
///     async fn handle(&mut self, turn: Turn<u32, u32>, _ctx: &mut Context<Self>) {
///         let n = *turn.request();
///         // A closed or failed conversation refuses the reply; nothing to do about it here.
///         let _ = turn.reply(2 * n);
///     }
/// }
/// ```
pub struct Turn<Req, Resp> {
    request: Req,
    reply: ConversationReply<Resp>,
}

impl<Req, Resp> Turn<Req, Resp> {
    pub(crate) fn new(request: Req, reply: ConversationReply<Resp>) -> Self {
        Turn { request, reply }
    }

    /// The request.
    pub fn request(&self) -> &Req {
        &self.request
    }

    /// The handle to answer with, for streaming replies while keeping the turn.
    pub fn reply_handle(&self) -> &ConversationReply<Resp> {
        &self.reply
    }

    /// The request and the handle to answer with, for a participant that streams replies
    /// or answers later.
    pub fn into_parts(self) -> (Req, ConversationReply<Resp>) {
        (self.request, self.reply)
    }

    /// Answers with one reply and finishes the turn.
    pub fn reply(self, reply: Resp) -> Result<(), ConversationError> {
        self.reply.finish(reply)
    }
}

impl<Req: fmt::Debug, Resp> fmt::Debug for Turn<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("request", &self.request)
            .field("turn", &self.reply.turn)
            .finish()
    }
}

/// The handle a participant answers one turn with: any number of replies, then the end of
/// the turn.
///
/// A turn is answered once it is finished ([`finish`](Self::finish) or
/// [`end`](Self::end)). Dropping the handle unfinished leaves the turn open: a participant
/// that crashes mid-turn drops it too, so a drop cannot count as an answer. If the
/// participant then stops, the conversation's crash policy handles the turn.
///
/// Every method fails with the conversation's error once it is closed or failed, and with
/// [`ConversationError::TurnClosed`] once the conversation counted this participant as
/// crashed.
pub struct ConversationReply<Resp> {
    sink: Weak<dyn ReplySink<Resp>>,
    turn: TurnId,
}

impl<Resp> ConversationReply<Resp> {
    pub(crate) fn new(sink: Weak<dyn ReplySink<Resp>>, turn: TurnId) -> Self {
        ConversationReply { sink, turn }
    }

    /// Sends one reply and keeps the turn open for more (a streamed answer).
    pub fn send(&self, reply: Resp) -> Result<(), ConversationError> {
        self.forward(Some(reply), false)
    }

    /// Sends the last reply and finishes the turn.
    pub fn finish(self, reply: Resp) -> Result<(), ConversationError> {
        self.forward(Some(reply), true)
    }

    /// Finishes the turn without a further reply (after streamed replies, or to decline).
    pub fn end(self) -> Result<(), ConversationError> {
        self.forward(None, true)
    }

    /// Whether the turn still waits for an answer: `false` once it is finished, once the
    /// conversation counted this participant as crashed or took the turn back, and once
    /// the conversation has ended. A participant may skip work for a turn that is not open,
    /// since its replies would be refused.
    pub fn is_open(&self) -> bool {
        self.sink
            .upgrade()
            .is_some_and(|sink| sink.is_open(self.turn))
    }

    fn forward(&self, reply: Option<Resp>, last: bool) -> Result<(), ConversationError> {
        match self.sink.upgrade() {
            Some(sink) => sink.reply(self.turn, reply, last),
            None => Err(ConversationError::Dropped),
        }
    }
}

impl<Resp> fmt::Debug for ConversationReply<Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConversationReply")
            .field("turn", &self.turn)
            .finish_non_exhaustive()
    }
}
