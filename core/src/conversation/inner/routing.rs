//! Which participants get a request.

use std::panic::AssertUnwindSafe;

use crate::id::ActorId;

use super::Inner;
use crate::conversation::error::ConversationError;
use crate::conversation::policy::Routing;

impl<Req, Resp> Inner<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    pub(super) fn route(
        &mut self,
        request: &Req,
        routing: &Routing<Req>,
    ) -> Result<Vec<usize>, ConversationError> {
        let live: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.is_alive(i))
            .collect();
        let Some(&first) = live.first() else {
            return Err(ConversationError::NoLiveParticipants);
        };
        match routing {
            Routing::Broadcast => Ok(live),
            Routing::FirstLive => Ok(vec![first]),
            Routing::RoundRobin => {
                let n = self.members.len();
                let chosen = (0..n)
                    .map(|k| (self.cursor + k) % n)
                    .find(|&i| self.is_alive(i))
                    .unwrap_or(first);
                self.cursor = (chosen + 1) % n;
                Ok(vec![chosen])
            }
            Routing::Custom(choose) => {
                let ids: Vec<ActorId> = live.iter().map(|&i| self.members[i].id.clone()).collect();
                // User code under the conversation's lock: a panic is caught so it cannot
                // leave the lock poisoned, and counts as no choice.
                match std::panic::catch_unwind(AssertUnwindSafe(|| choose(request, &ids))) {
                    Ok(Some(index)) => live
                        .get(index)
                        .map(|&member| vec![member])
                        .ok_or(ConversationError::NoRoute),
                    Ok(None) => Err(ConversationError::NoRoute),
                    Err(_) => {
                        tracing::warn!(conversation = self.id, "routing function panicked");
                        Err(ConversationError::NoRoute)
                    }
                }
            }
        }
    }

    /// The next live member after `crashed`, in the order they were added, that has not
    /// been given the request.
    pub(super) fn next_after(&self, crashed: usize, given: &[bool]) -> Option<usize> {
        let n = self.members.len();
        (1..n)
            .map(|k| (crashed + k) % n)
            .find(|&i| self.is_alive(i) && !given.get(i).copied().unwrap_or(false))
    }
}
