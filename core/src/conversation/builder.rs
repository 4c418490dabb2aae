//! Setting up a conversation: participants, routing, crash policy and deadline.

use std::any::TypeId;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Conversation;
use super::error::ConversationError;
use super::inner::{Inner, no_participants};
use super::participant::Participant;
use super::policy::{CrashPolicy, Routing};
use super::shared::Shared;

/// Numbers conversations for logs.
static NEXT_CONVERSATION: AtomicU64 = AtomicU64::new(1);

/// Sets up a [`Conversation`]; made by [`Conversation::builder`].
///
/// Defaults: no participants (a buffer), [`Routing::Broadcast`], [`CrashPolicy::Fail`],
/// no deadline.
pub struct ConversationBuilder<Req, Resp> {
    participants: Vec<Arc<dyn Participant<Req, Resp>>>,
    routing: Routing<Req>,
    on_crash: CrashPolicy<Req>,
    deadline: Option<Duration>,
}

impl<Req, Resp> ConversationBuilder<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    pub(crate) fn new() -> Self {
        ConversationBuilder {
            participants: Vec::new(),
            routing: Routing::default(),
            on_crash: CrashPolicy::default(),
            deadline: None,
        }
    }

    /// Adds a participant, usually an [`ActorRef`](crate::ActorRef) to an actor that
    /// handles [`Turn<Req, Resp>`](crate::Turn). Participants are routed to and handed on to
    /// in the order they were added.
    pub fn participant(mut self, participant: impl Participant<Req, Resp>) -> Self {
        self.participants.push(Arc::new(participant));
        self
    }

    /// Which participants a request goes to; default [`Routing::Broadcast`].
    pub fn routing(mut self, routing: Routing<Req>) -> Self {
        self.routing = routing;
        self
    }

    /// What a participant's crash does; default [`CrashPolicy::Fail`].
    pub fn on_crash(mut self, policy: CrashPolicy<Req>) -> Self {
        self.on_crash = policy;
        self
    }

    /// Fails the conversation with
    /// [`DeadlineExceeded`](ConversationError::DeadlineExceeded) if it has not ended
    /// `deadline` after [`start`](Self::start). Default: none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Starts the conversation in phase [`Created`](crate::ConversationPhase::Created) and
    /// starts watching its participants. Must be called within a tokio runtime.
    ///
    /// Fails with [`DuplicateParticipant`](ConversationError::DuplicateParticipant) when an
    /// actor was added twice, and with [`NoParticipants`](ConversationError::NoParticipants)
    /// when there are no participants and `Req` and `Resp` differ, since such a
    /// conversation could never reply.
    pub fn start(self) -> Result<Conversation<Req, Resp>, ConversationError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ConversationError::NoRuntime)?;
        for (index, participant) in self.participants.iter().enumerate() {
            if self.participants[..index]
                .iter()
                .any(|earlier| earlier.id() == participant.id())
            {
                return Err(ConversationError::DuplicateParticipant {
                    participant: participant.id().clone(),
                });
            }
        }
        if self.participants.is_empty() && TypeId::of::<Req>() != TypeId::of::<Resp>() {
            return Err(no_participants::<Req, Resp>());
        }
        let id = NEXT_CONVERSATION.fetch_add(1, Ordering::Relaxed);
        let ids = self.participants.iter().map(|p| p.id().clone()).collect();
        let inner = Inner::new(id, ids, self.on_crash);
        let shared = Arc::new(Shared::new(
            id,
            inner,
            self.participants,
            self.routing,
            runtime,
        ));
        shared.start_tasks(self.deadline);
        tracing::debug!(conversation = id, "conversation started");
        Ok(Conversation { shared })
    }
}

impl<Req: 'static, Resp: 'static> fmt::Debug for ConversationBuilder<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self
            .participants
            .iter()
            .map(|p| p.id().to_string())
            .collect();
        f.debug_struct("ConversationBuilder")
            .field("participants", &ids)
            .field("routing", &self.routing)
            .field("on_crash", &self.on_crash)
            .field("deadline", &self.deadline)
            .finish()
    }
}
