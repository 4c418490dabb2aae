//! Conversations with a participant on another proc, reached through `Net`: an in-test
//! `RemoteRoute` that encodes with postcard on one side and calls the other proc's
//! `deliver_remote_to`, as a gateway does between the procs it has attached.
//!
//! The crash-policy tests run one negotiation twice, with the failing seller local (it
//! crashes) and remote (the connection to its proc is lost), and check both runs with the
//! same assertions: a lost connection is a crash with `StopReason::Disconnected`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_core::{
    Actor, ActorId, ActorRef, Context, Conversation, ConversationError, ConversationPhase,
    ConversationReply, CrashPolicy, Handler, Liveness, Location, Proc, ProcAddr, ProcId,
    RemoteActor, RemoteAddr, RemoteHandlers, RemoteMessage, RemoteParticipant, Routing, StopReason,
    Turn,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use crate::common::within;
use crate::net::Net;

// ---------------------------------------------------------------------------------------
// Two procs: the buyer's and the market's.

const MARKET_AT: Location = Location::Local(2);

/// The buyer's proc (`local:1`) and the market's proc (`local:2`), joined by a `Net`.
struct Pair {
    net: Arc<Net>,
    buyer: Proc,
    market: Proc,
}

impl Pair {
    fn new() -> Self {
        let net = Arc::new(Net::default());
        let buyer = net.proc("buyer", 1); // local:1
        let market = net.proc("market", 2);
        Pair { net, buyer, market }
    }

    /// Spawns `seller` on the market, exposes it, and looks it up from the buyer.
    async fn remote_seller(&self, name: &str, seller: RemoteSeller) -> ActorRef<RemoteSeller> {
        let local = self.market.spawn(name, seller).unwrap();
        self.market.expose_remote(&local).unwrap();
        let at = ProcAddr::new(self.market.id().clone(), MARKET_AT);
        let remote = within("the lookup", self.buyer.lookup_remote(&at, name))
            .await
            .unwrap();
        assert!(remote.is_remote());
        remote
    }

    /// What a gateway does when the market's process dies: the route to it fails with
    /// `Disconnected`, and the buyer's proc is told the peer is lost.
    fn lose_market(&self) {
        self.net.set_down(&MARKET_AT, true);
        self.buyer.peer_lost(&MARKET_AT);
    }
}

// ---------------------------------------------------------------------------------------
// The negotiation: messages and sellers.

/// The buyer's offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Offer(u32);

impl RemoteMessage for Offer {
    const NAME: &'static str = "test.conversation.Offer";
}

/// A seller's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Quote {
    seller: String,
    price: u32,
    accepted: bool,
}

fn quote(seller: &str, price: u32, accepted: bool) -> Quote {
    Quote {
        seller: seller.to_owned(),
        price,
        accepted,
    }
}

/// How a seller prices: accept at or above the floor, else counter with the floor. The
/// offer `hold_at` is taken but not answered (the seller says so through `taken`).
#[derive(Clone)]
struct Pricing {
    name: &'static str,
    floor: u32,
    hold_at: Option<u32>,
    panic_at: Option<u32>,
    taken: Arc<Notify>,
}

impl Pricing {
    fn new(name: &'static str, floor: u32) -> Self {
        Pricing {
            name,
            floor,
            hold_at: None,
            panic_at: None,
            taken: Arc::new(Notify::new()),
        }
    }

    fn holding_at(mut self, offer: u32) -> Self {
        self.hold_at = Some(offer);
        self
    }

    fn panicking_at(mut self, offer: u32) -> Self {
        self.panic_at = Some(offer);
        self
    }

    fn answer(&self, Offer(offer): &Offer) -> Quote {
        if self.panic_at == Some(*offer) {
            panic!("seller crashed on offer {offer}");
        }
        if *offer >= self.floor {
            quote(self.name, *offer, true)
        } else {
            quote(self.name, self.floor, false)
        }
    }
}

/// A local participant: handles the conversation's turns.
struct LocalSeller {
    pricing: Pricing,
    held: Vec<ConversationReply<Quote>>,
}

impl Actor for LocalSeller {}

impl Handler<Turn<Offer, Quote>> for LocalSeller {
    type Reply = ();
    async fn handle(&mut self, turn: Turn<Offer, Quote>, _ctx: &mut Context<Self>) {
        if self.pricing.hold_at == Some(turn.request().0) {
            self.held.push(turn.into_parts().1);
            self.pricing.taken.notify_one();
            return;
        }
        let quote = self.pricing.answer(turn.request());
        let _ = turn.reply(quote);
    }
}

/// Reachable remotely, but with no remote message: a turn cannot cross a process.
impl RemoteActor for LocalSeller {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new()
    }
}

/// Fails the local seller from outside any turn.
struct Crash;

impl Handler<Crash> for LocalSeller {
    type Reply = ();
    async fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        ctx.fail("crash requested");
    }
}

/// A remote participant: answers the offer itself, as a remote ask. A held offer waits
/// for `release`.
struct RemoteSeller {
    pricing: Pricing,
    release: Arc<Notify>,
    seen: Arc<Mutex<Vec<u32>>>,
}

impl RemoteSeller {
    fn new(pricing: Pricing) -> Self {
        RemoteSeller {
            pricing,
            release: Arc::new(Notify::new()),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl Actor for RemoteSeller {}

impl Handler<Offer> for RemoteSeller {
    type Reply = Quote;
    async fn handle(&mut self, offer: Offer, _ctx: &mut Context<Self>) -> Quote {
        self.seen.lock().unwrap().push(offer.0);
        if self.pricing.hold_at == Some(offer.0) {
            self.pricing.taken.notify_one();
            self.release.notified().await;
        }
        self.pricing.answer(&offer)
    }
}

impl RemoteActor for RemoteSeller {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().ask::<Offer>()
    }
}

type Talk = Conversation<Offer, Quote>;

// ---------------------------------------------------------------------------------------
// One negotiation, with the failing seller local or remote.

#[derive(Clone, Copy, Debug)]
enum Side {
    Local,
    Remote,
}

/// A negotiation set up: the failing seller ("flaky", floor 100, holds offer 90) first,
/// the steady local seller (floor 90) second, routed `FirstLive`.
struct Negotiation {
    talk: Talk,
    flaky: ActorId,
    /// Taken notice of the held offer.
    taken: Arc<Notify>,
    /// How the flaky seller fails.
    failure: Failure,
    /// The buyer's proc, kept running for the whole test.
    _home: Proc,
}

enum Failure {
    Crash(ActorRef<LocalSeller>),
    Lost { pair: Pair, release: Arc<Notify> },
}

impl Negotiation {
    async fn start(side: Side, policy: CrashPolicy<Offer>) -> Self {
        let pricing = Pricing::new("flaky", 100).holding_at(90);
        let taken = pricing.taken.clone();
        let builder = Talk::builder().routing(Routing::FirstLive).on_crash(policy);
        let (builder, flaky, failure, home) = match side {
            Side::Local => {
                let proc = Proc::new(ProcId::unique("buyer"));
                let seller = LocalSeller {
                    pricing,
                    held: Vec::new(),
                };
                let seller = proc.spawn("flaky", seller).unwrap();
                let flaky = seller.id().clone();
                (
                    builder.participant(seller.clone()),
                    flaky,
                    Failure::Crash(seller),
                    proc,
                )
            }
            Side::Remote => {
                let pair = Pair::new();
                let seller = RemoteSeller::new(pricing);
                let release = seller.release.clone();
                let seller = pair.remote_seller("flaky", seller).await;
                let flaky = seller.id().clone();
                let home = pair.buyer.clone();
                (
                    builder.participant(RemoteParticipant::new(seller)),
                    flaky,
                    Failure::Lost { pair, release },
                    home,
                )
            }
        };
        let steady = LocalSeller {
            pricing: Pricing::new("steady", 90),
            held: Vec::new(),
        };
        let steady = home.spawn("steady", steady).unwrap();
        let talk = builder.participant(steady).start().unwrap();
        Negotiation {
            talk,
            flaky,
            taken,
            failure,
            _home: home,
        }
    }

    /// The reason the flaky seller's failure is reported with.
    fn reason(&self) -> StopReason {
        match self.failure {
            Failure::Crash(_) => StopReason::Failed("crash requested".into()),
            Failure::Lost { .. } => StopReason::Disconnected,
        }
    }

    /// Offer 80 (countered, and left unreceived in the buffer), then offer 90, which the
    /// flaky seller takes and holds; then it fails.
    async fn fail_with_a_reply_buffered_and_a_turn_open(&self) {
        self.talk.send(Offer(80)).await.unwrap();
        within("the counter to be buffered", async {
            while self.talk.state().buffered != 1 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        self.talk.send(Offer(90)).await.unwrap();
        within("the held offer", self.taken.notified()).await;
        assert_eq!(self.talk.state().open_turns, 1);
        let exit = self.talk.notify_exit(&self.flaky).unwrap();
        match &self.failure {
            Failure::Crash(seller) => seller.tell(Crash).await.unwrap(),
            Failure::Lost { pair, .. } => pair.lose_market(),
        }
        let exit = within("the flaky seller's exit", exit).await.unwrap();
        assert_eq!(exit.participant, self.flaky);
        assert_eq!((exit.reason, exit.crashed), (self.reason(), true));
    }

    fn crashed(&self) -> ConversationError {
        ConversationError::ParticipantCrashed {
            participant: self.flaky.clone(),
            reason: self.reason(),
        }
    }

    /// The participants as the conversation sees them: the flaky one crashed with its
    /// reason, the steady one alive.
    fn assert_liveness(&self) {
        let state = self.talk.state();
        assert_eq!(state.participants[0].id, self.flaky);
        assert_eq!(
            state.participants[0].liveness,
            Liveness::Crashed(self.reason())
        );
        assert!(!state.participants[0].liveness.is_alive());
        assert_eq!(state.participants[1].liveness, Liveness::Alive);
    }

    /// For a lost seller whose process in fact still runs: its answer comes back late and
    /// is refused, so the caller never sees it.
    async fn late_answer_is_refused(&self) {
        let Failure::Lost { pair, release } = &self.failure else {
            return;
        };
        let received = self.talk.state().received;
        pair.net.set_down(&MARKET_AT, false);
        release.notify_one();
        assert!(matches!(
            self.talk.receive_timeout(Duration::from_millis(100)).await,
            Err(ConversationError::Timeout { .. }
                | ConversationError::Closed
                | ConversationError::ParticipantCrashed { .. }
                | ConversationError::Compensated { .. })
        ));
        assert_eq!(self.talk.state().received, received);
        assert_eq!(self.talk.state().buffered, 0);
    }
}

/// Under `Fail`, a lost remote seller fails the conversation as a local crash does: the
/// reply buffered before the loss is received, then `ParticipantCrashed` with
/// `Disconnected`; the state shows the seller crashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_policy_treats_a_lost_peer_as_a_crash() {
    for side in [Side::Local, Side::Remote] {
        let n = Negotiation::start(side, CrashPolicy::Fail).await;
        n.fail_with_a_reply_buffered_and_a_turn_open().await;

        assert_eq!(
            within("the buffered counter", n.talk.receive()).await,
            Ok(quote("flaky", 100, false)),
            "{side:?}"
        );
        assert_eq!(
            within("the failure", n.talk.receive()).await,
            Err(n.crashed()),
            "{side:?}"
        );
        let state = n.talk.state();
        assert_eq!(state.phase, ConversationPhase::Failed, "{side:?}");
        assert_eq!(state.failure, Some(n.crashed()), "{side:?}");
        assert_eq!((state.sent, state.received), (2, 1), "{side:?}");
        n.assert_liveness();
        assert_eq!(n.talk.send(Offer(95)).await, Err(n.crashed()), "{side:?}");
        n.late_answer_is_refused().await;
    }
}

/// Under `RouteToNext`, the offer the lost remote seller held goes to the steady seller,
/// which accepts it, and the negotiation completes, as after a local crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_to_next_hands_a_lost_peers_turn_on() {
    for side in [Side::Local, Side::Remote] {
        let n = Negotiation::start(side, CrashPolicy::RouteToNext).await;
        n.fail_with_a_reply_buffered_and_a_turn_open().await;

        assert_eq!(
            within("the buffered counter", n.talk.receive()).await,
            Ok(quote("flaky", 100, false)),
            "{side:?}"
        );
        assert_eq!(
            within("the deal from the steady seller", n.talk.receive()).await,
            Ok(quote("steady", 90, true)),
            "{side:?}"
        );
        n.late_answer_is_refused().await;
        // Later offers go to the live seller only.
        n.talk.send(Offer(95)).await.unwrap();
        assert_eq!(
            within("the next deal", n.talk.receive()).await,
            Ok(quote("steady", 95, true)),
            "{side:?}"
        );
        n.talk.complete().unwrap();
        let state = n.talk.state();
        assert_eq!(state.phase, ConversationPhase::Closed, "{side:?}");
        assert_eq!((state.sent, state.received), (3, 3), "{side:?}");
        assert_eq!(state.failure, None, "{side:?}");
        n.assert_liveness();
    }
}

/// Under `Compensate`, a lost remote seller starts the compensation once, with the work
/// done (its countered offer) and its unanswered offer; its outcome fails the
/// conversation after the buffered reply, as after a local crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensate_runs_once_for_a_lost_peer() {
    for side in [Side::Local, Side::Remote] {
        let runs = Arc::new(AtomicUsize::new(0));
        let (report_tx, report_rx) = oneshot::channel();
        let policy = {
            let runs = runs.clone();
            CrashPolicy::compensate(move |report| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let _ = report_tx.send(report);
                Ok(())
            })
        };
        let n = Negotiation::start(side, policy).await;
        n.fail_with_a_reply_buffered_and_a_turn_open().await;

        let report = within("the compensation", report_rx).await.unwrap();
        assert_eq!(report.participant, n.flaky, "{side:?}");
        assert_eq!(report.reason, n.reason(), "{side:?}");
        assert_eq!(report.completed.len(), 1, "{side:?}");
        assert_eq!(report.completed[0].participant, n.flaky, "{side:?}");
        assert_eq!(report.completed[0].request, Offer(80), "{side:?}");
        assert_eq!(report.unanswered, [Offer(90)], "{side:?}");

        let outcome = ConversationError::Compensated {
            participant: n.flaky.clone(),
            reason: n.reason(),
        };
        assert_eq!(
            within("the buffered counter", n.talk.receive()).await,
            Ok(quote("flaky", 100, false)),
            "{side:?}"
        );
        assert_eq!(
            within("the outcome", n.talk.receive()).await,
            Err(outcome.clone()),
            "{side:?}"
        );
        assert_eq!(n.talk.state().failure, Some(outcome), "{side:?}");
        n.assert_liveness();
        n.late_answer_is_refused().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{side:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Remote participants otherwise.

/// A negotiation with one local and one remote seller, broadcast: each offer reaches both,
/// the remote one through the route (in order), and every quote comes back; completing
/// closes the conversation once both have answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_with_a_local_and_a_remote_seller() {
    let pair = Pair::new();
    let remote = RemoteSeller::new(Pricing::new("remote", 100));
    let seen = remote.seen.clone();
    let remote = pair.remote_seller("remote", remote).await;
    let local = LocalSeller {
        pricing: Pricing::new("local", 90),
        held: Vec::new(),
    };
    let local = pair.buyer.spawn("local", local).unwrap();
    let talk = Talk::builder()
        .participant(local.clone())
        .participant(RemoteParticipant::new(remote.clone()))
        .start()
        .unwrap();

    for offer in [70, 80, 90, 100] {
        talk.send(Offer(offer)).await.unwrap();
    }
    let mut quotes = Vec::new();
    for _ in 0..8 {
        quotes.push(within("a quote", talk.receive()).await.unwrap());
    }
    talk.complete().unwrap();

    let from = |seller: &str| -> Vec<Quote> {
        quotes
            .iter()
            .filter(|q| q.seller == seller)
            .cloned()
            .collect()
    };
    assert_eq!(
        from("local"),
        [
            quote("local", 90, false),
            quote("local", 90, false),
            quote("local", 90, true),
            quote("local", 100, true),
        ]
    );
    assert_eq!(
        from("remote"),
        [
            quote("remote", 100, false),
            quote("remote", 100, false),
            quote("remote", 100, false),
            quote("remote", 100, true),
        ]
    );
    assert_eq!(*seen.lock().unwrap(), [70, 80, 90, 100]);
    let state = talk.state();
    assert_eq!(state.phase, ConversationPhase::Closed);
    assert_eq!((state.sent, state.received), (4, 8));
    assert_eq!(state.participants[1].id, *remote.id());
    assert_eq!(state.participants[1].liveness, Liveness::Alive);
}

/// A remote seller that really crashes is seen through the remote watch with its own
/// reason (the panic), not as a lost connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_crash_is_seen_with_its_reason() {
    let pair = Pair::new();
    let seller = RemoteSeller::new(Pricing::new("remote", 100).panicking_at(13));
    let seller = pair.remote_seller("remote", seller).await;
    let talk = Talk::builder()
        .participant(RemoteParticipant::new(seller.clone()))
        .start()
        .unwrap();
    talk.send(Offer(100)).await.unwrap();
    assert_eq!(
        within("the deal", talk.receive()).await,
        Ok(quote("remote", 100, true))
    );
    talk.send(Offer(13)).await.unwrap();
    let reason = StopReason::Panicked("seller crashed on offer 13".into());
    assert_eq!(
        within("the crash", talk.receive()).await,
        Err(ConversationError::ParticipantCrashed {
            participant: seller.id().clone(),
            reason: reason.clone(),
        })
    );
    assert_eq!(
        talk.state().participants[0].liveness,
        Liveness::Crashed(reason)
    );
}

/// A remote seller that stops normally with nothing open only leaves the conversation;
/// with no one left, the conversation fails with `NoLiveParticipants`, as for a local one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_normal_stop_is_not_a_crash() {
    let pair = Pair::new();
    let seller = pair
        .remote_seller("remote", RemoteSeller::new(Pricing::new("remote", 100)))
        .await;
    let talk = Talk::builder()
        .participant(RemoteParticipant::new(seller.clone()))
        .start()
        .unwrap();
    let exit = talk.notify_exit(seller.id()).unwrap();
    seller.stop();
    let exit = within("the stop", exit).await.unwrap();
    assert_eq!((exit.reason, exit.crashed), (StopReason::Stopped, false));
    assert_eq!(
        talk.state().participants[0].liveness,
        Liveness::Stopped(StopReason::Stopped)
    );
    assert_eq!(
        talk.state().failure,
        Some(ConversationError::NoLiveParticipants)
    );
}

/// A route that fails with `Disconnected` before the gateway reports the peer lost is
/// enough: the ask fails, and the participant counts as crashed with `Disconnected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_ask_counts_as_a_crash() {
    let pair = Pair::new();
    let seller = pair
        .remote_seller("remote", RemoteSeller::new(Pricing::new("remote", 100)))
        .await;
    let talk = Talk::builder()
        .participant(RemoteParticipant::new(seller.clone()))
        .start()
        .unwrap();
    pair.net.set_down(&MARKET_AT, true);
    talk.send(Offer(100)).await.unwrap();
    assert_eq!(
        within("the crash", talk.receive()).await,
        Err(ConversationError::ParticipantCrashed {
            participant: seller.id().clone(),
            reason: StopReason::Disconnected,
        })
    );
    assert_eq!(
        talk.state().participants[0].liveness,
        Liveness::Crashed(StopReason::Disconnected)
    );
}

/// An exit notice registered while the buyer's proc learns the peer is lost is delivered
/// exactly once, with `Disconnected`, in each of 500 races; a late notice gets the same
/// exit; and no remote watch is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_notice_racing_a_lost_peer_fires_exactly_once() {
    let pair = Pair::new();
    let seller = pair
        .remote_seller("remote", RemoteSeller::new(Pricing::new("remote", 100)))
        .await;
    for round in 0..500u32 {
        let talk = Talk::builder()
            .participant(RemoteParticipant::new(seller.clone()))
            .start()
            .unwrap();
        // `start` registers the remote watch before it returns.
        assert_eq!(pair.buyer.remote_watch_count(), 1, "round {round}");
        let registration = {
            let talk = talk.clone();
            let id = seller.id().clone();
            tokio::spawn(async move { talk.notify_exit(&id) })
        };
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pair.buyer.peer_lost(&MARKET_AT), 1, "round {round}");
        let notice = within("the registration", registration)
            .await
            .unwrap()
            .unwrap();
        let exit = within("the exit notice", notice).await.unwrap();
        assert_eq!(
            (exit.reason, exit.crashed),
            (StopReason::Disconnected, true),
            "round {round}"
        );
        let late = talk.notify_exit(seller.id()).unwrap();
        let late = within("the late exit notice", late).await.unwrap();
        assert_eq!(late.reason, StopReason::Disconnected, "round {round}");
        assert_eq!(pair.buyer.remote_watch_count(), 0, "round {round}");
        assert_eq!(
            talk.state().failure,
            Some(ConversationError::ParticipantCrashed {
                participant: seller.id().clone(),
                reason: StopReason::Disconnected,
            }),
            "round {round}"
        );
    }
}

/// A remote ref given directly (not wrapped in `RemoteParticipant`) can take no turn: it
/// counts as crashed at once with a reason that says so, instead of leaving turns open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_remote_ref_is_refused_as_a_crash() {
    let pair = Pair::new();
    let seller = LocalSeller {
        pricing: Pricing::new("local", 90),
        held: Vec::new(),
    };
    let seller = pair.market.spawn("seller", seller).unwrap();
    let remote: ActorRef<LocalSeller> = pair.buyer.remote_ref(RemoteAddr {
        actor: seller.id().clone(),
        location: MARKET_AT,
    });
    assert!(remote.is_remote());
    let talk = Talk::builder().participant(remote).start().unwrap();
    let exit = talk.notify_exit(seller.id()).unwrap();
    let exit = within("the refusal", exit).await.unwrap();
    assert!(exit.crashed);
    assert!(
        matches!(&exit.reason, StopReason::Failed(why) if why.contains("RemoteParticipant")),
        "{:?}",
        exit.reason
    );
    assert!(matches!(
        talk.send(Offer(90)).await,
        Err(ConversationError::ParticipantCrashed { .. })
    ));
    assert!(seller.is_alive());
}

/// Turns queued for a remote participant behind a slow one are not sent once the
/// conversation has closed: the actor does no work whose answer would be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_conversation_sends_no_queued_turn() {
    let pair = Pair::new();
    let seller = RemoteSeller::new(Pricing::new("remote", 100).holding_at(90));
    let (taken, release, seen) = (
        seller.pricing.taken.clone(),
        seller.release.clone(),
        seller.seen.clone(),
    );
    let seller = pair.remote_seller("remote", seller).await;
    let talk = Talk::builder()
        .participant(RemoteParticipant::new(seller.clone()))
        .start()
        .unwrap();
    talk.send(Offer(90)).await.unwrap();
    within("the held offer", taken.notified()).await;
    talk.send(Offer(95)).await.unwrap();
    talk.send(Offer(96)).await.unwrap();
    assert_eq!(talk.state().open_turns, 3);
    talk.close().unwrap();
    release.notify_one();

    // The held offer's answer comes back and is refused; then the queue is skipped. The
    // seller, asked directly, answers only after what it had been sent.
    assert_eq!(
        within("a direct ask", seller.ask(Offer(100)))
            .await
            .unwrap(),
        quote("remote", 100, true)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*seen.lock().unwrap(), [90, 100]);
    assert_eq!(talk.receive().await, Err(ConversationError::Closed));
}

/// A lost connection crashes every participant behind it: with two remote sellers on the
/// lost proc and a local one, under `RouteToNext`, the held offer ends at the local seller
/// whatever order the two exits are seen in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_peer_crashes_every_participant_behind_it() {
    let pair = Pair::new();
    let first = RemoteSeller::new(Pricing::new("first", 100).holding_at(90));
    let taken = first.pricing.taken.clone();
    let first = pair.remote_seller("first", first).await;
    let second = RemoteSeller::new(Pricing::new("second", 100));
    let second = pair.remote_seller("second", second).await;
    let local = LocalSeller {
        pricing: Pricing::new("local", 90),
        held: Vec::new(),
    };
    let local = pair.buyer.spawn("local", local).unwrap();
    let talk = Talk::builder()
        .participant(RemoteParticipant::new(first.clone()))
        .participant(RemoteParticipant::new(second.clone()))
        .participant(local)
        .routing(Routing::FirstLive)
        .on_crash(CrashPolicy::RouteToNext)
        .start()
        .unwrap();
    talk.send(Offer(90)).await.unwrap();
    within("the held offer", taken.notified()).await;
    pair.lose_market();

    assert_eq!(
        within("the deal", talk.receive()).await,
        Ok(quote("local", 90, true))
    );
    let state = talk.state();
    for remote in [0, 1] {
        assert_eq!(
            state.participants[remote].liveness,
            Liveness::Crashed(StopReason::Disconnected)
        );
    }
    assert_eq!(state.participants[2].liveness, Liveness::Alive);
    assert_eq!(state.open_turns, 0);
    assert_eq!(pair.buyer.remote_watch_count(), 0);
}
