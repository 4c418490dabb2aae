//! Participants' exits: recording them, resolving exit notices and applying the crash
//! policy.

use tokio::sync::oneshot;

use crate::actor::StopReason;
use crate::conversation::error::ConversationError;
use crate::conversation::exit::{ExitNotice, ParticipantExit};
use crate::conversation::participant::TurnId;
use crate::conversation::policy::CrashReport;
use crate::conversation::state::Liveness;
use crate::id::ActorId;

use super::ConversationPhase::Completing;
use super::{AfterExit, Delivery, Inner, Policy};

impl<Req, Resp> Inner<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    /// Registers an exit notice. It resolves at once when the exit is already recorded or
    /// the conversation has ended; otherwise the exit resolves it. Both happen under this
    /// lock, so a registration racing the exit gets exactly one notification.
    pub(crate) fn register_notice(
        &mut self,
        participant: &ActorId,
    ) -> Result<ExitNotice, ConversationError> {
        let ended = self.phase.is_final().then(|| self.final_error());
        let Some(member) = self.members.iter_mut().find(|m| &m.id == participant) else {
            return Err(ConversationError::UnknownParticipant {
                participant: participant.clone(),
            });
        };
        let (tx, rx) = oneshot::channel();
        let exit = match &member.liveness {
            Liveness::Alive => None,
            Liveness::Stopped(reason) => Some((reason.clone(), false)),
            Liveness::Crashed(reason) => Some((reason.clone(), true)),
        };
        match (exit, ended) {
            (Some((reason, crashed)), _) => {
                let _ = tx.send(Ok(ParticipantExit {
                    participant: member.id.clone(),
                    reason,
                    crashed,
                }));
            }
            (None, Some(error)) => {
                let _ = tx.send(Err(error));
            }
            (None, None) => member.notices.push(tx),
        }
        Ok(ExitNotice { rx })
    }

    /// Records a participant's exit, resolves its notices and applies the crash policy.
    pub(crate) fn participant_exited(
        &mut self,
        member: usize,
        reason: StopReason,
    ) -> AfterExit<Req> {
        let lost: Vec<TurnId> = self
            .turns
            .iter()
            .filter(|(_, open)| open.member == member)
            .map(|(&turn, _)| turn)
            .collect();
        let crashed = reason.is_abnormal() || !lost.is_empty();
        let Some(record) = self.members.get_mut(member) else {
            return AfterExit::Nothing;
        };
        if !record.liveness.is_alive() {
            return AfterExit::Nothing;
        }
        record.liveness = if crashed {
            Liveness::Crashed(reason.clone())
        } else {
            Liveness::Stopped(reason.clone())
        };
        let exit = ParticipantExit {
            participant: record.id.clone(),
            reason,
            crashed,
        };
        for notice in record.notices.drain(..) {
            let _ = notice.send(Ok(exit.clone()));
        }
        let ParticipantExit {
            participant,
            reason,
            ..
        } = exit;
        if self.phase.is_final() {
            return AfterExit::Nothing;
        }
        if !crashed {
            tracing::debug!(conversation = self.id, %participant, %reason, "participant left the conversation");
            // A completing conversation closes by itself once drained; any other one could
            // never get another reply.
            if self.phase != Completing && self.turns.is_empty() && !self.any_alive() {
                self.fail(ConversationError::NoLiveParticipants);
            }
            return AfterExit::Nothing;
        }
        tracing::warn!(
            conversation = self.id,
            %participant,
            %reason,
            unanswered = lost.len(),
            policy = ?self.policy,
            "participant crashed"
        );
        match self.policy {
            Policy::Fail => {
                self.fail(ConversationError::ParticipantCrashed {
                    participant,
                    reason,
                });
                AfterExit::Nothing
            }
            Policy::RouteToNext => self.route_to_next(member, lost, participant, reason),
            Policy::Compensate => self.begin_compensation(lost, participant, reason),
        }
    }

    fn route_to_next(
        &mut self,
        crashed: usize,
        lost: Vec<TurnId>,
        participant: ActorId,
        reason: StopReason,
    ) -> AfterExit<Req> {
        if !self.any_alive() {
            self.fail(ConversationError::ParticipantCrashed {
                participant,
                reason,
            });
            return AfterExit::Nothing;
        }
        let mut deliveries = Vec::new();
        for turn in lost {
            let Some(open) = self.turns.remove(&turn) else {
                continue;
            };
            let next = self
                .requests
                .get(&open.request)
                .and_then(|request| self.next_after(crashed, &request.given));
            let Some(next) = next else {
                // Every live participant already has this request (a broadcast): nothing to
                // hand on.
                self.release_request(open.request);
                continue;
            };
            let new_turn = self.open_turn(open.request, next);
            if let Some(request) = self.requests.get_mut(&open.request) {
                if let Some(flag) = request.given.get_mut(next) {
                    *flag = true;
                }
                tracing::info!(
                    conversation = self.id,
                    from = %participant,
                    to = %self.members[next].id,
                    "re-sent an unanswered request"
                );
                deliveries.push(Delivery {
                    member: next,
                    turn: new_turn,
                    request: request.request.clone(),
                });
            }
        }
        self.settle();
        AfterExit::Reroute(deliveries)
    }

    fn begin_compensation(
        &mut self,
        lost: Vec<TurnId>,
        participant: ActorId,
        reason: StopReason,
    ) -> AfterExit<Req> {
        let mut unanswered = Vec::with_capacity(lost.len());
        for turn in lost {
            if let Some(open) = self.turns.remove(&turn) {
                if let Some(request) = self.requests.get(&open.request) {
                    unanswered.push(request.request.clone());
                }
                self.release_request(open.request);
            }
        }
        // Only the first crash finds the compensation; later ones have nothing to start.
        let Some(compensation) = self.compensation.take() else {
            return AfterExit::Nothing;
        };
        self.compensating = Some(participant.clone());
        let report = CrashReport {
            participant,
            reason,
            completed: std::mem::take(&mut self.completed),
            unanswered,
        };
        AfterExit::Compensate(compensation, report)
    }
}
