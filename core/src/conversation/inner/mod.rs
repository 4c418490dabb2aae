//! The state machine of one conversation: phase, buffered replies, open turns, routing and
//! crash handling, without I/O.
//!
//! Everything here runs under the conversation's lock and returns what the async side must
//! do next (turns to deliver, a compensation to run), so every decision is made in one
//! critical section and no reply, exit or waiter can slip between a check and its effect.
//! This file holds the caller's operations and the phase changes; `routing.rs` picks
//! participants and `exits.rs` applies the crash policy.

mod exits;
mod routing;

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};

use crate::id::ActorId;

use super::error::ConversationError;
use super::exit::NoticeSender;
use super::participant::TurnId;
use super::phase::ConversationPhase;
use super::policy::{Compensation, CompletedTurn, CrashPolicy, CrashReport, Routing};
use super::state::{ConversationState, Liveness, ParticipantState};

use ConversationPhase::{Active, Closed, Completing, Created, Failed};

/// The conversation's state; the async side holds it behind a mutex.
pub(crate) struct Inner<Req, Resp> {
    id: u64,
    phase: ConversationPhase,
    failure: Option<ConversationError>,
    sent: u64,
    received: u64,
    buffer: VecDeque<Resp>,
    waiting: usize,
    members: Vec<Member>,
    /// Requests with at least one open turn, by sequence number.
    requests: BTreeMap<u64, OpenRequest<Req>>,
    /// Open turns; ids grow, so iterating gives send order.
    turns: BTreeMap<TurnId, OpenTurn>,
    next_request: u64,
    next_turn: u64,
    /// Round-robin: the member to try first for the next request.
    cursor: usize,
    policy: Policy,
    /// Taken by the first crash under `Compensate`, which is what makes it run once.
    compensation: Option<Compensation<Req>>,
    /// Turns answered so far, kept only while a compensation may still run.
    completed: Vec<CompletedTurn<Req>>,
    /// Set while a compensation runs: the participant whose crash started it.
    compensating: Option<ActorId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Fail,
    RouteToNext,
    Compensate,
}

struct Member {
    id: ActorId,
    liveness: Liveness,
    /// Exit notices waiting for this member's exit.
    notices: Vec<NoticeSender>,
}

struct OpenRequest<Req> {
    /// Kept to re-send it when a participant crashes before answering.
    request: Req,
    /// Which members have been given this request, by index.
    given: Vec<bool>,
    open_turns: usize,
}

struct OpenTurn {
    request: u64,
    member: usize,
}

/// One turn to hand to a participant.
pub(crate) struct Delivery<Req> {
    pub(crate) member: usize,
    pub(crate) turn: TurnId,
    pub(crate) request: Req,
}

/// What a send turned into.
pub(crate) enum Sent<Req> {
    /// No participants: the request went into the reply buffer.
    Buffered,
    /// Turns to deliver, in order.
    Turns(Vec<Delivery<Req>>),
}

/// What the async side must do after a participant's exit.
pub(crate) enum AfterExit<Req> {
    Nothing,
    Reroute(Vec<Delivery<Req>>),
    Compensate(Compensation<Req>, CrashReport<Req>),
}

/// A move of the state machine.
enum Step {
    Activate,
    Complete,
    Close,
    Fail(ConversationError),
}

impl Step {
    fn target(&self) -> ConversationPhase {
        match self {
            Step::Activate => Active,
            Step::Complete => Completing,
            Step::Close => Closed,
            Step::Fail(_) => Failed,
        }
    }
}

impl<Req, Resp> Inner<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    pub(crate) fn new(id: u64, participants: Vec<ActorId>, on_crash: CrashPolicy<Req>) -> Self {
        let (policy, compensation) = match on_crash {
            CrashPolicy::Fail => (Policy::Fail, None),
            CrashPolicy::RouteToNext => (Policy::RouteToNext, None),
            CrashPolicy::Compensate(compensation) => (Policy::Compensate, Some(compensation)),
        };
        Inner {
            id,
            phase: Created,
            failure: None,
            sent: 0,
            received: 0,
            buffer: VecDeque::new(),
            waiting: 0,
            members: participants
                .into_iter()
                .map(|id| Member {
                    id,
                    liveness: Liveness::Alive,
                    notices: Vec::new(),
                })
                .collect(),
            requests: BTreeMap::new(),
            turns: BTreeMap::new(),
            next_request: 0,
            next_turn: 0,
            cursor: 0,
            policy,
            compensation,
            completed: Vec::new(),
            compensating: None,
        }
    }

    pub(crate) fn phase(&self) -> ConversationPhase {
        self.phase
    }

    /// Accepts a request: into the buffer without participants, else as turns for the
    /// participants the routing picks.
    pub(crate) fn begin_send(
        &mut self,
        request: Req,
        routing: &Routing<Req>,
    ) -> Result<Sent<Req>, ConversationError> {
        self.ensure_open()?;
        if let Some(participant) = &self.compensating {
            return Err(ConversationError::Compensating {
                participant: participant.clone(),
            });
        }
        // Checked before routing so a refused send changes nothing.
        if self.phase != Active {
            self.phase.transition(Active)?;
        }
        if self.members.is_empty() {
            let reply = loopback::<Req, Resp>(request).ok_or_else(no_participants::<Req, Resp>)?;
            self.activate()?;
            self.sent += 1;
            self.buffer.push_back(reply);
            return Ok(Sent::Buffered);
        }
        let targets = self.route(&request, routing)?;
        // Clone before changing anything, so a panicking `clone` leaves no half-made turns.
        let copies: Vec<Req> = targets.iter().map(|_| request.clone()).collect();
        self.activate()?;
        self.sent += 1;
        let seq = self.next_request;
        self.next_request += 1;
        let mut given = vec![false; self.members.len()];
        let mut deliveries = Vec::with_capacity(targets.len());
        for (member, request) in targets.into_iter().zip(copies) {
            if let Some(flag) = given.get_mut(member) {
                *flag = true;
            }
            let turn = self.open_turn(seq, member);
            deliveries.push(Delivery {
                member,
                turn,
                request,
            });
        }
        self.requests.insert(
            seq,
            OpenRequest {
                request,
                given,
                open_turns: deliveries.len(),
            },
        );
        Ok(Sent::Turns(deliveries))
    }

    /// Takes the next reply for a receive; `Ok(None)` means wait.
    pub(crate) fn take_reply(&mut self) -> Result<Option<Resp>, ConversationError> {
        match self.phase {
            Closed => Err(ConversationError::Closed),
            // Replies that arrived before the failure are still the caller's.
            Failed => match self.buffer.pop_front() {
                Some(reply) => {
                    self.received += 1;
                    Ok(Some(reply))
                }
                None => Err(self.failure_error()),
            },
            Created => {
                self.apply(Step::Activate)?;
                Ok(None)
            }
            Active | Completing => {
                let reply = self.buffer.pop_front();
                if reply.is_some() {
                    self.received += 1;
                    self.settle();
                }
                Ok(reply)
            }
        }
    }

    /// Takes a participant's reply for `turn`; `last` finishes the turn.
    pub(crate) fn accept_reply(
        &mut self,
        turn: TurnId,
        reply: Option<Resp>,
        last: bool,
    ) -> Result<(), ConversationError> {
        self.ensure_open()?;
        if !self.turns.contains_key(&turn) {
            return Err(ConversationError::TurnClosed);
        }
        if let Some(reply) = reply {
            self.buffer.push_back(reply);
        }
        if last {
            self.finish_turn(turn);
            self.settle();
        }
        Ok(())
    }

    /// Whether `turn` still waits for an answer (final phases keep no turns).
    pub(crate) fn is_open(&self, turn: TurnId) -> bool {
        self.turns.contains_key(&turn)
    }

    /// Takes back turns a cancelled send never delivered.
    pub(crate) fn withdraw(&mut self, turns: &[TurnId]) {
        for turn in turns {
            if let Some(open) = self.turns.remove(turn) {
                self.release_request(open.request);
            }
        }
        self.settle();
    }

    pub(crate) fn complete(&mut self) -> Result<(), ConversationError> {
        self.ensure_open()?;
        self.apply(Step::Complete)?;
        self.settle();
        Ok(())
    }

    pub(crate) fn close(&mut self) -> Result<(), ConversationError> {
        self.ensure_open()?;
        self.apply(Step::Close)
    }

    /// Fails the conversation unless it already ended; whether it did.
    pub(crate) fn fail(&mut self, error: ConversationError) -> bool {
        self.apply(Step::Fail(error)).is_ok()
    }

    /// Ends a running compensation with its outcome; whether that failed the conversation
    /// (it may have ended meanwhile).
    pub(crate) fn finish_compensation(&mut self, outcome: ConversationError) -> bool {
        self.compensating = None;
        self.fail(outcome)
    }

    pub(crate) fn wait_started(&mut self) {
        self.waiting += 1;
    }

    pub(crate) fn wait_ended(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
    }

    pub(crate) fn snapshot(&self) -> ConversationState {
        ConversationState {
            phase: self.phase,
            sent: self.sent,
            received: self.received,
            buffered: self.buffer.len(),
            pending_receives: self.waiting,
            open_turns: self.turns.len(),
            participants: self
                .members
                .iter()
                .map(|m| ParticipantState {
                    id: m.id.clone(),
                    liveness: m.liveness.clone(),
                })
                .collect(),
            failure: self.failure.clone(),
        }
    }

    /// Applies one move: the only place the phase changes. Validity is the phase table's
    /// call ([`ConversationPhase::transition`]).
    fn apply(&mut self, step: Step) -> Result<(), ConversationError> {
        let from = self.phase;
        let to = from.transition(step.target())?;
        self.phase = to;
        match step {
            Step::Activate | Step::Complete => {
                tracing::debug!(conversation = self.id, %from, %to, "conversation phase changed");
            }
            Step::Close => {
                tracing::debug!(conversation = self.id, %from, %to, "conversation closed");
                // A closed conversation hands out nothing more, buffered replies included.
                self.buffer.clear();
                self.release_all(&ConversationError::Closed);
            }
            Step::Fail(error) => {
                tracing::warn!(conversation = self.id, %from, %error, "conversation failed");
                // The buffer stays: replies received before the failure are still delivered.
                self.release_all(&error);
                self.failure = Some(error);
            }
        }
        Ok(())
    }

    /// On entering a final phase: no turn stays open, no compensation can start, and every
    /// exit notice still waiting resolves with the reason the conversation ended.
    fn release_all(&mut self, error: &ConversationError) {
        self.turns.clear();
        self.requests.clear();
        self.compensation = None;
        self.completed.clear();
        for member in &mut self.members {
            for notice in member.notices.drain(..) {
                let _ = notice.send(Err(error.clone()));
            }
        }
    }

    fn activate(&mut self) -> Result<(), ConversationError> {
        if self.phase == Active {
            Ok(())
        } else {
            self.apply(Step::Activate)
        }
    }

    /// A completing conversation closes once nothing more can arrive and nothing is left to
    /// receive. A running compensation will fail it instead, so it does not close meanwhile.
    fn settle(&mut self) {
        if self.phase == Completing
            && self.turns.is_empty()
            && self.buffer.is_empty()
            && self.compensating.is_none()
        {
            let _ = self.apply(Step::Close);
        }
    }

    fn ensure_open(&self) -> Result<(), ConversationError> {
        match self.phase {
            Closed => Err(ConversationError::Closed),
            Failed => Err(self.failure_error()),
            Created | Active | Completing => Ok(()),
        }
    }

    fn failure_error(&self) -> ConversationError {
        // `apply` sets the failure together with the `Failed` phase; the fallback is for
        // completeness only.
        self.failure.clone().unwrap_or(ConversationError::Closed)
    }

    fn final_error(&self) -> ConversationError {
        match self.phase {
            Failed => self.failure_error(),
            _ => ConversationError::Closed,
        }
    }

    fn open_turn(&mut self, request: u64, member: usize) -> TurnId {
        let turn = TurnId(self.next_turn);
        self.next_turn += 1;
        self.turns.insert(turn, OpenTurn { request, member });
        turn
    }

    fn finish_turn(&mut self, turn: TurnId) {
        let Some(open) = self.turns.remove(&turn) else {
            return;
        };
        if self.compensation.is_some() {
            if let (Some(member), Some(request)) = (
                self.members.get(open.member),
                self.requests.get(&open.request),
            ) {
                self.completed.push(CompletedTurn {
                    participant: member.id.clone(),
                    request: request.request.clone(),
                });
            }
        }
        self.release_request(open.request);
    }

    /// One turn of `request` closed; forgets the request once none is open.
    fn release_request(&mut self, request: u64) {
        if let Some(open) = self.requests.get_mut(&request) {
            open.open_turns = open.open_turns.saturating_sub(1);
            if open.open_turns == 0 {
                self.requests.remove(&request);
            }
        }
    }

    fn is_alive(&self, member: usize) -> bool {
        self.members
            .get(member)
            .is_some_and(|m| m.liveness.is_alive())
    }

    fn any_alive(&self) -> bool {
        self.members.iter().any(|m| m.liveness.is_alive())
    }
}

/// The request as a reply when both are the same type: what lets a conversation without
/// participants be a buffer. `None` when the types differ.
pub(crate) fn loopback<Req: 'static, Resp: 'static>(request: Req) -> Option<Resp> {
    let mut slot = Some(request);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<Resp>>()
        .and_then(Option::take)
}

pub(crate) fn no_participants<Req, Resp>() -> ConversationError {
    ConversationError::NoParticipants {
        request: std::any::type_name::<Req>(),
        reply: std::any::type_name::<Resp>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::StopReason;
    use crate::id::ProcId;

    type Machine = Inner<&'static str, &'static str>;

    fn machine(members: usize, on_crash: CrashPolicy<&'static str>) -> Machine {
        let proc = ProcId::new("unit", 1);
        let ids = (0..members)
            .map(|i| ActorId::new(proc.clone(), format!("p{i}"), i as u64))
            .collect();
        Inner::new(1, ids, on_crash)
    }

    fn members_of(sent: Sent<&'static str>) -> Vec<usize> {
        match sent {
            Sent::Turns(deliveries) => deliveries.iter().map(|d| d.member).collect(),
            Sent::Buffered => Vec::new(),
        }
    }

    /// Round-robin skips a member that left and keeps its rotation among the others.
    #[test]
    fn round_robin_skips_members_that_left() {
        let mut m = machine(3, CrashPolicy::Fail);
        let routing = Routing::RoundRobin;
        assert_eq!(members_of(m.begin_send("a", &routing).unwrap()), [0]);
        assert!(matches!(
            m.participant_exited(1, StopReason::Normal),
            AfterExit::Nothing
        ));
        assert_eq!(members_of(m.begin_send("b", &routing).unwrap()), [2]);
        assert_eq!(members_of(m.begin_send("c", &routing).unwrap()), [0]);
        assert_eq!(m.phase(), Active);
    }

    /// `RouteToNext` hands an unanswered request to the next live member after the crashed
    /// one, wrapping around, and never to one that already has it.
    #[test]
    fn route_to_next_picks_the_next_member_without_the_request() {
        let mut m = machine(3, CrashPolicy::RouteToNext);
        let first = Routing::FirstLive;
        assert_eq!(members_of(m.begin_send("a", &first).unwrap()), [0]);
        let panicked = StopReason::Panicked("boom".into());
        let AfterExit::Reroute(deliveries) = m.participant_exited(0, panicked.clone()) else {
            panic!("the request must be handed on");
        };
        let moved: Vec<_> = deliveries.iter().map(|d| (d.member, d.request)).collect();
        assert_eq!(moved, [(1, "a")]);
        // Member 1 crashes too: member 2 is next, and member 0 (dead) is skipped.
        let AfterExit::Reroute(deliveries) = m.participant_exited(1, panicked.clone()) else {
            panic!("the request must be handed on again");
        };
        assert_eq!(deliveries.iter().map(|d| d.member).collect::<Vec<_>>(), [2]);
        let turn = deliveries[0].turn;
        m.accept_reply(turn, Some("done"), true).unwrap();
        assert_eq!(m.take_reply(), Ok(Some("done")));
        assert_eq!(m.snapshot().open_turns, 0);
    }

    /// A reply for a turn whose participant was counted as crashed is refused.
    #[test]
    fn replies_for_a_handed_on_turn_are_refused() {
        let mut m = machine(2, CrashPolicy::RouteToNext);
        let sent = m.begin_send("a", &Routing::FirstLive).unwrap();
        let Sent::Turns(deliveries) = sent else {
            panic!("two members make turns");
        };
        let old = deliveries[0].turn;
        let _ = m.participant_exited(0, StopReason::Stopped);
        assert_eq!(
            m.accept_reply(old, Some("late"), true),
            Err(ConversationError::TurnClosed)
        );
    }

    /// The loopback turns a request into a reply only when both are the same type.
    #[test]
    fn loopback_needs_equal_types() {
        assert_eq!(loopback::<u32, u32>(7), Some(7));
        assert_eq!(loopback::<u32, u64>(7), None);
    }
}
