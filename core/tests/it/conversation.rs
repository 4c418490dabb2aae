//! Conversations: lifecycle, replies without echo, crash policies, deadlines, timeouts
//! that leave no waiter, and exit notices that fire exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexus_core::{
    Actor, ActorRef, Context, Conversation, ConversationError, ConversationPhase,
    ConversationReply, CrashPolicy, Handler, Liveness, Proc, ProcId, Routing, StopReason, Turn,
};
use tokio::sync::oneshot;

use crate::common::within;

use ConversationPhase::{Active, Closed, Completing, Created, Failed};

/// A participant whose answer depends on the request:
/// - `hold`: keeps the turn open until a [`Release`];
/// - `stream:N`: N replies, then the end of the turn;
/// - `burst-then-crash`: two replies, then a crash with the turn open;
/// - `crash`, or the request given to `crashing_on`: a crash with the turn open;
/// - anything else: one reply, `name:request`.
struct Party {
    name: &'static str,
    crash_on: Option<&'static str>,
    held: Vec<ConversationReply<String>>,
}

impl Party {
    fn new(name: &'static str) -> Self {
        Party {
            name,
            crash_on: None,
            held: Vec::new(),
        }
    }

    fn crashing_on(mut self, request: &'static str) -> Self {
        self.crash_on = Some(request);
        self
    }
}

impl Actor for Party {}

impl Handler<Turn<String, String>> for Party {
    type Reply = ();
    async fn handle(&mut self, turn: Turn<String, String>, ctx: &mut Context<Self>) {
        let request = turn.request().clone();
        if request == "crash" || self.crash_on == Some(request.as_str()) {
            // The turn is dropped unanswered, as in a real crash.
            ctx.fail("crash requested");
            return;
        }
        let name = self.name;
        if request == "hold" {
            self.held.push(turn.into_parts().1);
        } else if request == "burst-then-crash" {
            let (_, reply) = turn.into_parts();
            reply.send(format!("{name}:one")).unwrap();
            reply.send(format!("{name}:two")).unwrap();
            ctx.fail("crash requested");
        } else if let Some(count) = request.strip_prefix("stream:") {
            let (_, reply) = turn.into_parts();
            for k in 0..count.parse::<u32>().unwrap() {
                reply.send(format!("{name}:{k}")).unwrap();
            }
            reply.end().unwrap();
        } else {
            turn.reply(format!("{name}:{request}")).unwrap();
        }
    }
}

/// Finishes the oldest held turn with this reply; answers with what the conversation said.
struct Release(&'static str);

impl Handler<Release> for Party {
    type Reply = Result<(), ConversationError>;
    async fn handle(&mut self, Release(text): Release, _ctx: &mut Context<Self>) -> Self::Reply {
        self.held.remove(0).finish(text.to_owned())
    }
}

/// Fails the actor from outside any turn.
struct Crash;

impl Handler<Crash> for Party {
    type Reply = ();
    async fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        ctx.fail("crash requested");
    }
}

fn crash_reason() -> StopReason {
    StopReason::Failed("crash requested".into())
}

fn crashed(party: &ActorRef<Party>) -> ConversationError {
    ConversationError::ParticipantCrashed {
        participant: party.id().clone(),
        reason: crash_reason(),
    }
}

type Talk = Conversation<String, String>;

fn s(text: &str) -> String {
    text.to_owned()
}

/// Waits until `count` receives are pending on `talk`.
async fn pending_receives(talk: &Talk, count: usize) {
    within("receives to be pending", async {
        while talk.state().pending_receives != count {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// The phase table allows exactly the moves of the diagram and refuses every other pair,
/// staying put included, with `InvalidTransition`.
#[test]
fn phase_table_allows_only_the_documented_moves() {
    let allowed = [
        (Created, Active),
        (Active, Completing),
        (Created, Closed),
        (Active, Closed),
        (Completing, Closed),
        (Created, Failed),
        (Active, Failed),
        (Completing, Failed),
    ];
    for from in ConversationPhase::ALL {
        for to in ConversationPhase::ALL {
            let outcome = from.transition(to);
            if allowed.contains(&(from, to)) {
                assert_eq!(outcome, Ok(to), "{from} -> {to} must be allowed");
            } else {
                assert_eq!(
                    outcome,
                    Err(ConversationError::InvalidTransition { from, to }),
                    "{from} -> {to} must be refused"
                );
            }
        }
    }
}

/// A conversation walks Created → Active → Completing → Closed: the first send activates
/// it, complete stops the sending, and receiving the last reply closes it.
#[tokio::test]
async fn lifecycle_walks_created_active_completing_closed() {
    let talk = Talk::builder().start().unwrap();
    assert_eq!(talk.state().phase, Created);
    talk.send(s("a")).await.unwrap();
    assert_eq!(talk.state().phase, Active);
    talk.send(s("b")).await.unwrap();
    talk.complete().unwrap();
    assert_eq!(talk.state().phase, Completing);
    assert_eq!(talk.receive().await.unwrap(), "a");
    assert_eq!(
        talk.state().phase,
        Completing,
        "one reply is still buffered"
    );
    assert_eq!(talk.receive().await.unwrap(), "b");
    assert_eq!(talk.state().phase, Closed);
    assert_eq!(talk.receive().await, Err(ConversationError::Closed));

    // A receive activates a created conversation too.
    let other = Talk::builder().start().unwrap();
    assert!(matches!(
        other.receive_timeout(Duration::from_millis(1)).await,
        Err(ConversationError::Timeout { .. })
    ));
    assert_eq!(other.state().phase, Active);
}

/// Moves the state machine does not connect fail with `InvalidTransition` and change
/// nothing: complete before anything happened, complete twice, send while completing.
#[tokio::test]
async fn invalid_moves_are_typed_errors() {
    let talk = Talk::builder().start().unwrap();
    assert_eq!(
        talk.complete(),
        Err(ConversationError::InvalidTransition {
            from: Created,
            to: Completing
        })
    );
    assert_eq!(talk.state().phase, Created);

    talk.send(s("kept")).await.unwrap();
    talk.complete().unwrap();
    assert_eq!(
        talk.complete(),
        Err(ConversationError::InvalidTransition {
            from: Completing,
            to: Completing
        })
    );
    assert_eq!(
        talk.send(s("refused")).await,
        Err(ConversationError::InvalidTransition {
            from: Completing,
            to: Active
        })
    );
    let state = talk.state();
    assert_eq!(
        (state.phase, state.sent, state.buffered),
        (Completing, 1, 1)
    );
    assert_eq!(talk.receive().await.unwrap(), "kept");
}

/// Close is valid from Created, Active and Completing; after it every operation, close
/// included, fails with `Closed`, and the conversation never becomes active again.
#[tokio::test]
async fn close_from_every_live_phase_then_everything_is_closed() {
    for phase in [Created, Active, Completing] {
        let talk = Talk::builder().start().unwrap();
        if phase != Created {
            talk.send(s("x")).await.unwrap();
        }
        if phase == Completing {
            talk.complete().unwrap();
        }
        assert_eq!(talk.state().phase, phase);
        talk.close().unwrap();
        assert_eq!(talk.state().phase, Closed);
        assert_eq!(talk.send(s("y")).await, Err(ConversationError::Closed));
        assert_eq!(talk.receive().await, Err(ConversationError::Closed));
        assert_eq!(talk.complete(), Err(ConversationError::Closed));
        assert_eq!(talk.close(), Err(ConversationError::Closed));
        let state = talk.state();
        assert_eq!((state.phase, state.buffered), (Closed, 0));
    }
}

/// Close fails every pending receive with `Closed` and leaves no pending receive behind;
/// a participant's late reply is refused with `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_fails_pending_receives_with_closed() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let talk = Talk::builder().participant(alpha.clone()).start().unwrap();
    talk.send(s("hold")).await.unwrap();
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let talk = talk.clone();
            tokio::spawn(async move { talk.receive().await })
        })
        .collect();
    pending_receives(&talk, 2).await;
    talk.close().unwrap();
    for receiver in receivers {
        assert_eq!(
            within("a pending receive to fail", receiver).await.unwrap(),
            Err(ConversationError::Closed)
        );
    }
    assert_eq!(talk.state().pending_receives, 0);
    assert_eq!(
        within("the late reply", alpha.ask(Release("late")))
            .await
            .unwrap(),
        Err(ConversationError::Closed)
    );
}

/// Without participants the conversation is a buffer: receive returns what send put in, in
/// order, also to a receive that was waiting before the send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_participant_conversation_is_a_buffer() {
    let talk = Conversation::<u32, u32>::builder().start().unwrap();
    let waiting = {
        let talk = talk.clone();
        tokio::spawn(async move { talk.receive().await })
    };
    within("the receive to wait", async {
        while talk.state().pending_receives != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    for n in 1..=3 {
        talk.send(n).await.unwrap();
    }
    assert_eq!(within("the waiting receive", waiting).await.unwrap(), Ok(1));
    assert_eq!(talk.receive().await, Ok(2));
    assert_eq!(talk.receive().await, Ok(3));
    let state = talk.state();
    assert_eq!((state.sent, state.received, state.buffered), (3, 3, 0));
}

/// With participants, receive yields their replies and never the caller's own request:
/// after the one reply, and for a request a participant holds, nothing else arrives.
#[tokio::test]
async fn participants_reply_and_requests_are_never_echoed() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let talk = Talk::builder().participant(alpha).start().unwrap();
    talk.send(s("hello")).await.unwrap();
    assert_eq!(
        within("the reply", talk.receive()).await.unwrap(),
        "alpha:hello"
    );
    talk.send(s("hold")).await.unwrap();
    assert!(matches!(
        talk.receive_timeout(Duration::from_millis(50)).await,
        Err(ConversationError::Timeout { timeout_ms: 50 })
    ));
    let state = talk.state();
    assert_eq!((state.sent, state.received, state.open_turns), (2, 1, 1));
}

/// A turn can be answered with a stream of replies; a completing conversation still
/// receives the replies to requests already sent, then closes by itself.
#[tokio::test]
async fn completing_delivers_outstanding_replies_then_closes() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let talk = Talk::builder().participant(alpha.clone()).start().unwrap();
    talk.send(s("stream:3")).await.unwrap();
    talk.send(s("hold")).await.unwrap();
    talk.complete().unwrap();
    for k in 0..3 {
        assert_eq!(
            within("a streamed reply", talk.receive()).await.unwrap(),
            format!("alpha:{k}")
        );
    }
    assert_eq!(talk.state().phase, Completing, "a turn is still open");
    within("the release", alpha.ask(Release("last")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        within("the last reply", talk.receive()).await.unwrap(),
        "last"
    );
    assert_eq!(talk.state().phase, Closed);
    assert_eq!(talk.receive().await, Err(ConversationError::Closed));
}

/// Broadcast reaches every live participant; round-robin takes turns; first-live sticks to
/// the first; a custom rule gets the choice, and a rule that chooses nobody fails the send.
#[tokio::test]
async fn routing_rules_choose_the_documented_participants() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let beta = proc.spawn("beta", Party::new("beta")).unwrap();
    let start = |routing: Routing<String>| {
        Talk::builder()
            .participant(alpha.clone())
            .participant(beta.clone())
            .routing(routing)
            .start()
            .unwrap()
    };
    async fn replies(talk: &Talk, count: usize) -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..count {
            got.push(within("a reply", talk.receive()).await.unwrap());
        }
        got.sort();
        got
    }

    let broadcast = start(Routing::Broadcast);
    broadcast.send(s("q")).await.unwrap();
    assert_eq!(replies(&broadcast, 2).await, ["alpha:q", "beta:q"]);

    let round_robin = start(Routing::RoundRobin);
    for request in ["1", "2", "3"] {
        round_robin.send(s(request)).await.unwrap();
        let reply = within("a reply", round_robin.receive()).await.unwrap();
        let expected = if request == "2" { "beta" } else { "alpha" };
        assert_eq!(reply, format!("{expected}:{request}"));
    }

    let first = start(Routing::FirstLive);
    for request in ["1", "2"] {
        first.send(s(request)).await.unwrap();
        assert_eq!(replies(&first, 1).await, [format!("alpha:{request}")]);
    }

    let custom = start(Routing::custom(|request: &String, live| {
        (request == "to-beta").then(|| live.iter().position(|id| id.name() == "beta"))?
    }));
    custom.send(s("to-beta")).await.unwrap();
    assert_eq!(replies(&custom, 1).await, ["beta:to-beta"]);
    assert_eq!(
        custom.send(s("nowhere")).await,
        Err(ConversationError::NoRoute)
    );
    assert_eq!(custom.state().sent, 1, "a refused send is not counted");
}

/// Under `Fail`, a crash fails the conversation and every pending receive with
/// `ParticipantCrashed`, naming the participant and its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_policy_fails_pending_receives_with_participant_crashed() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let beta = proc.spawn("beta", Party::new("beta")).unwrap();
    let talk = Talk::builder()
        .participant(alpha.clone())
        .participant(beta.clone())
        .routing(Routing::FirstLive)
        .on_crash(CrashPolicy::Fail)
        .start()
        .unwrap();
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let talk = talk.clone();
            tokio::spawn(async move { talk.receive().await })
        })
        .collect();
    pending_receives(&talk, 2).await;
    talk.send(s("crash")).await.unwrap();
    for receiver in receivers {
        assert_eq!(
            within("a pending receive to fail", receiver).await.unwrap(),
            Err(crashed(&alpha))
        );
    }
    let state = talk.state();
    assert_eq!(state.phase, Failed);
    assert_eq!(state.failure, Some(crashed(&alpha)));
    assert!(
        beta.is_alive(),
        "the policy fails the conversation, not the others"
    );
}

/// Replies that arrived before a crash are still received, in order, and only then the
/// crash.
#[tokio::test]
async fn replies_buffered_before_a_crash_are_delivered_then_the_error() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let talk = Talk::builder().participant(alpha.clone()).start().unwrap();
    let exit = talk.notify_exit(alpha.id()).unwrap();
    talk.send(s("burst-then-crash")).await.unwrap();
    within("the crash", exit).await.unwrap();
    assert_eq!(talk.state().phase, Failed);
    assert_eq!(talk.receive().await.unwrap(), "alpha:one");
    assert_eq!(talk.receive().await.unwrap(), "alpha:two");
    assert_eq!(talk.receive().await, Err(crashed(&alpha)));
    assert_eq!(talk.receive().await, Err(crashed(&alpha)));
}

/// A failed conversation cannot be reactivated: send, receive, complete and close all
/// return the failure, and the phase stays `Failed`.
#[tokio::test(start_paused = true)]
async fn failed_conversation_is_never_reactivated() {
    let talk = Talk::builder()
        .deadline(Duration::from_secs(1))
        .start()
        .unwrap();
    talk.send(s("a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failure = ConversationError::DeadlineExceeded { deadline_ms: 1000 };
    assert_eq!(talk.state().phase, Failed);
    assert_eq!(talk.send(s("b")).await, Err(failure.clone()));
    assert_eq!(
        talk.receive().await.unwrap(),
        "a",
        "sent before the failure"
    );
    assert_eq!(talk.receive().await, Err(failure.clone()));
    assert_eq!(talk.complete(), Err(failure.clone()));
    assert_eq!(talk.close(), Err(failure.clone()));
    assert_eq!(talk.state().phase, Failed);
}

/// When the deadline passes, pending receives fail with `DeadlineExceeded` at the deadline
/// and the conversation fails.
#[tokio::test(start_paused = true)]
async fn deadline_fails_pending_receives() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let talk = Talk::builder()
        .participant(alpha)
        .deadline(Duration::from_secs(5))
        .start()
        .unwrap();
    let started = tokio::time::Instant::now();
    talk.send(s("hold")).await.unwrap();
    assert_eq!(
        within("the deadline", talk.receive()).await,
        Err(ConversationError::DeadlineExceeded { deadline_ms: 5000 })
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    let state = talk.state();
    assert_eq!((state.phase, state.open_turns), (Failed, 0));
}

/// `receive_timeout` returns `Timeout` when its time is up: not before, not later.
#[tokio::test(start_paused = true)]
async fn receive_timeout_returns_in_time() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let talk = Talk::builder().participant(alpha).start().unwrap();
    talk.send(s("hold")).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        talk.receive_timeout(Duration::from_millis(250)).await,
        Err(ConversationError::Timeout { timeout_ms: 250 })
    );
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    assert_eq!(talk.state().phase, Active, "a timeout does not end it");
}

/// After a `receive_timeout` expires (or a receive is dropped), the next reply goes to the
/// next receive, not to the receive that left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_receive_timeout_leaves_no_waiter() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let talk = Talk::builder().participant(alpha.clone()).start().unwrap();
    talk.send(s("hold")).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(
            talk.receive_timeout(Duration::from_millis(20)).await,
            Err(ConversationError::Timeout { .. })
        ));
    }
    tokio::select! {
        _ = talk.receive() => panic!("nothing was released yet"),
        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
    }
    assert_eq!(talk.state().pending_receives, 0, "no waiter is left behind");
    within("the release", alpha.ask(Release("late")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        within("the late reply", talk.receive()).await.unwrap(),
        "late"
    );
}

/// A seller that counters below its floor, accepts at or above it, and crashes on one
/// offer.
struct Seller {
    floor: u32,
    crash_at: Option<u32>,
}

impl Actor for Seller {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Quote {
    Counter(u32),
    Accept(u32),
}

impl Handler<Turn<u32, Quote>> for Seller {
    type Reply = ();
    async fn handle(&mut self, turn: Turn<u32, Quote>, _ctx: &mut Context<Self>) {
        let offer = *turn.request();
        if self.crash_at == Some(offer) {
            panic!("seller crashed on offer {offer}");
        }
        let quote = if offer >= self.floor {
            Quote::Accept(offer)
        } else {
            Quote::Counter(self.floor)
        };
        turn.reply(quote).unwrap();
    }
}

/// Under `RouteToNext`, a negotiation with two sellers completes after one of them
/// crashes: the offer it had not answered goes to the other seller, which accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_to_next_completes_negotiation_after_a_seller_crashes() {
    let proc = Proc::new(ProcId::unique("conv"));
    let first = Seller {
        floor: 100,
        crash_at: Some(90),
    };
    let first = proc.spawn("first", first).unwrap();
    let second = Seller {
        floor: 90,
        crash_at: None,
    };
    let second = proc.spawn("second", second).unwrap();
    let talk = Conversation::<u32, Quote>::builder()
        .participant(first.clone())
        .participant(second.clone())
        .routing(Routing::FirstLive)
        .on_crash(CrashPolicy::RouteToNext)
        .start()
        .unwrap();

    talk.send(80).await.unwrap();
    assert_eq!(
        within("a quote", talk.receive()).await,
        Ok(Quote::Counter(100))
    );
    talk.send(90).await.unwrap();
    assert_eq!(
        within("the deal from the second seller", talk.receive()).await,
        Ok(Quote::Accept(90))
    );
    talk.complete().unwrap();

    let state = talk.state();
    assert_eq!(state.phase, Closed);
    assert_eq!((state.sent, state.received), (2, 2));
    assert_eq!(
        state.participants[0].liveness,
        Liveness::Crashed(StopReason::Panicked("seller crashed on offer 90".into()))
    );
    assert_eq!(state.participants[1].liveness, Liveness::Alive);
}

/// Under `RouteToNext` with a broadcast, the others already have the crashed participant's
/// request, so it is not sent twice; the conversation goes on with the survivors; and when
/// the last one crashes with a request open, it fails with `ParticipantCrashed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_to_next_under_broadcast_goes_on_without_duplicates() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc
        .spawn("alpha", Party::new("alpha").crashing_on("x"))
        .unwrap();
    let beta = proc.spawn("beta", Party::new("beta")).unwrap();
    let talk = Talk::builder()
        .participant(alpha.clone())
        .participant(beta.clone())
        .on_crash(CrashPolicy::RouteToNext)
        .start()
        .unwrap();
    let alpha_exit = talk.notify_exit(alpha.id()).unwrap();
    talk.send(s("x")).await.unwrap();
    assert_eq!(
        within("beta's reply", talk.receive()).await.unwrap(),
        "beta:x"
    );
    within("alpha's crash", alpha_exit).await.unwrap();
    assert!(matches!(
        talk.receive_timeout(Duration::from_millis(50)).await,
        Err(ConversationError::Timeout { .. })
    ));
    assert_eq!(talk.state().open_turns, 0);

    talk.send(s("y")).await.unwrap();
    assert_eq!(
        within("beta's reply", talk.receive()).await.unwrap(),
        "beta:y"
    );

    talk.send(s("crash")).await.unwrap();
    assert_eq!(
        within("the last crash", talk.receive()).await,
        Err(crashed(&beta))
    );
}

/// Under `Compensate`, the compensation runs exactly once, even when a second participant
/// crashes; it is told the work already done and the unanswered request; sends wait out
/// its run refused; and its outcome fails the conversation and the pending receive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensate_runs_the_compensation_exactly_once() {
    let proc = Proc::new(ProcId::unique("conv"));
    let flights = proc.spawn("flights", Party::new("flights")).unwrap();
    let hotels = proc
        .spawn("hotels", Party::new("hotels").crashing_on("reserve"))
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let (report_tx, report_rx) = oneshot::channel();
    let (finish_tx, finish_rx) = oneshot::channel::<()>();
    let compensation = {
        let runs = runs.clone();
        CrashPolicy::compensate(move |report| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let _ = report_tx.send(report);
            let _ = finish_rx.await;
            Ok(())
        })
    };
    let talk = Talk::builder()
        .participant(flights.clone())
        .participant(hotels.clone())
        .routing(Routing::RoundRobin)
        .on_crash(compensation)
        .start()
        .unwrap();

    talk.send(s("reserve")).await.unwrap();
    assert_eq!(
        within("the flight", talk.receive()).await.unwrap(),
        "flights:reserve"
    );
    let pending = {
        let talk = talk.clone();
        tokio::spawn(async move { talk.receive().await })
    };
    talk.send(s("reserve")).await.unwrap();

    let report = within("the compensation to start", report_rx)
        .await
        .unwrap();
    assert_eq!(report.participant, *hotels.id());
    assert_eq!(report.reason, crash_reason());
    assert_eq!(report.completed.len(), 1);
    assert_eq!(report.completed[0].participant, *flights.id());
    assert_eq!(report.completed[0].request, "reserve");
    assert_eq!(report.unanswered, ["reserve"]);
    assert_eq!(
        talk.send(s("more")).await,
        Err(ConversationError::Compensating {
            participant: hotels.id().clone()
        })
    );

    let flights_exit = talk.notify_exit(flights.id()).unwrap();
    flights.tell(Crash).await.unwrap();
    within("the second crash", flights_exit).await.unwrap();
    finish_tx.send(()).unwrap();

    let outcome = ConversationError::Compensated {
        participant: hotels.id().clone(),
        reason: crash_reason(),
    };
    assert_eq!(
        within("the pending receive", pending).await.unwrap(),
        Err(outcome.clone())
    );
    assert_eq!(talk.state().failure, Some(outcome));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A compensation that returns an error fails the conversation with
/// `CompensationFailed` carrying that error.
#[tokio::test]
async fn failed_compensation_is_the_outcome() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let talk = Talk::builder()
        .participant(alpha.clone())
        .on_crash(CrashPolicy::compensate(|_report| async {
            Err("refund service unreachable".into())
        }))
        .start()
        .unwrap();
    talk.send(s("crash")).await.unwrap();
    assert_eq!(
        within("the outcome", talk.receive()).await,
        Err(ConversationError::CompensationFailed {
            participant: alpha.id().clone(),
            error: "refund service unreachable".into(),
        })
    );
}

/// A tiny participant for the race: it only ever crashes.
struct Brief;

impl Actor for Brief {}

impl Handler<Turn<u8, u8>> for Brief {
    type Reply = ();
    async fn handle(&mut self, turn: Turn<u8, u8>, _ctx: &mut Context<Self>) {
        let _ = turn.reply(0);
    }
}

struct Fail;

impl Handler<Fail> for Brief {
    type Reply = ();
    async fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        ctx.fail("crash requested");
    }
}

/// An exit notice registered while the participant crashes is delivered exactly once, with
/// the crash, in each of 10,000 races; so is a notice registered after the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_notice_racing_a_crash_fires_exactly_once() {
    let proc = Proc::new(ProcId::unique("race"));
    for round in 0..10_000u32 {
        let brief = proc.spawn(&format!("brief-{round}"), Brief).unwrap();
        let talk = Conversation::<u8, u8>::builder()
            .participant(brief.clone())
            .start()
            .unwrap();
        let registration = {
            let talk = talk.clone();
            let id = brief.id().clone();
            tokio::spawn(async move { talk.notify_exit(&id) })
        };
        // Vary which side usually gets there first.
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        brief.tell(Fail).await.unwrap();
        let notice = within("the registration", registration)
            .await
            .unwrap()
            .unwrap();
        let exit = within("the exit notice", notice).await.unwrap();
        assert_eq!(
            (exit.reason, exit.crashed),
            (crash_reason(), true),
            "round {round}"
        );
        let late = talk.notify_exit(brief.id()).unwrap();
        let late = within("the late exit notice", late).await.unwrap();
        assert_eq!(late.reason, crash_reason(), "round {round}");
    }
}

/// A notice for an actor that is not a participant is refused; a notice for a participant
/// still running when the conversation closes resolves with `Closed`.
#[tokio::test]
async fn exit_notice_for_strangers_and_after_close() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let stranger = proc.spawn("stranger", Party::new("stranger")).unwrap();
    let talk = Talk::builder().participant(alpha.clone()).start().unwrap();
    assert_eq!(
        talk.notify_exit(stranger.id()).unwrap_err(),
        ConversationError::UnknownParticipant {
            participant: stranger.id().clone()
        }
    );
    let notice = talk.notify_exit(alpha.id()).unwrap();
    talk.close().unwrap();
    assert_eq!(
        within("the notice", notice).await,
        Err(ConversationError::Closed)
    );
    assert_eq!(
        within(
            "a notice after close",
            talk.notify_exit(alpha.id()).unwrap()
        )
        .await,
        Err(ConversationError::Closed)
    );
}

/// `state` reports the phase, the counts, each participant's liveness (a normal stop with
/// nothing open is not a crash and fails nothing under `Fail`), and the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_reports_counts_liveness_and_failure() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    let beta = proc.spawn("beta", Party::new("beta")).unwrap();
    let talk = Talk::builder()
        .participant(alpha.clone())
        .participant(beta.clone())
        .routing(Routing::FirstLive)
        .start()
        .unwrap();
    talk.send(s("one")).await.unwrap();
    talk.send(s("hold")).await.unwrap();
    within("a reply", talk.receive()).await.unwrap();
    let state = talk.state();
    assert_eq!(state.phase, Active);
    assert_eq!((state.sent, state.received), (2, 1));
    assert_eq!(
        (state.open_turns, state.buffered, state.pending_receives),
        (1, 0, 0)
    );
    assert_eq!(state.failure, None);

    let beta_exit = talk.notify_exit(beta.id()).unwrap();
    beta.stop();
    let exit = within("beta's stop", beta_exit).await.unwrap();
    assert_eq!(
        (exit.reason.clone(), exit.crashed),
        (StopReason::Stopped, false)
    );
    let state = talk.state();
    assert_eq!(
        state.phase, Active,
        "a normal stop with nothing open is no crash"
    );
    let liveness: Vec<_> = state
        .participants
        .iter()
        .map(|p| p.liveness.clone())
        .collect();
    assert_eq!(
        liveness,
        [Liveness::Alive, Liveness::Stopped(StopReason::Stopped)]
    );

    // Alpha holds a turn, so even a requested stop leaves it unanswered: a crash.
    let alpha_exit = talk.notify_exit(alpha.id()).unwrap();
    alpha.stop();
    assert!(within("alpha's stop", alpha_exit).await.unwrap().crashed);
    let state = talk.state();
    let failure = ConversationError::ParticipantCrashed {
        participant: alpha.id().clone(),
        reason: StopReason::Stopped,
    };
    assert_eq!((state.phase, state.failure), (Failed, Some(failure)));
    assert_eq!(
        state.participants[0].liveness,
        Liveness::Crashed(StopReason::Stopped)
    );
}

/// Starting refuses an actor added twice, and a participant-less conversation whose
/// request and reply types differ (it could never reply).
#[tokio::test]
async fn start_refuses_bad_setups() {
    let proc = Proc::new(ProcId::unique("conv"));
    let alpha = proc.spawn("alpha", Party::new("alpha")).unwrap();
    assert_eq!(
        Talk::builder()
            .participant(alpha.clone())
            .participant(alpha.clone())
            .start()
            .unwrap_err(),
        ConversationError::DuplicateParticipant {
            participant: alpha.id().clone()
        }
    );
    assert!(matches!(
        Conversation::<u32, String>::builder().start().unwrap_err(),
        ConversationError::NoParticipants { .. }
    ));
}
