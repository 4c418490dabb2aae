//! A conversation whose participant lives in another OS process that is killed mid-way
//! (issue "conversations", point 7): under each crash policy the buyer sees exactly what
//! it sees when a local participant crashes (`core/tests/it/conversation*.rs`), with the
//! reason `Disconnected`.
//!
//! The failing seller ("flaky", floor 100) runs in a node process and holds offer 90
//! without answering; the steady seller (floor 90) runs in the hub. The buyer offers 80
//! (countered, left buffered), then 90 (held), then the node is SIGKILLed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use plexus::{
    Actor, ActorId, Context, Conversation, ConversationError, ConversationPhase, CrashPolicy,
    Handler, Liveness, Proc, RemoteActor, RemoteHandlers, RemoteMessage, RemoteParticipant,
    Routing, StopReason, Turn,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::{Hub, hub, start_node};

/// Set in a node once its flaky seller holds an offer.
static HOLDING: AtomicBool = AtomicBool::new(false);

/// The buyer's offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Offer(u32);
impl RemoteMessage for Offer {
    const NAME: &'static str = "cluster-test.conversation.Offer";
}

/// A seller's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Quote {
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

fn price(seller: &str, floor: u32, Offer(offer): &Offer) -> Quote {
    if *offer >= floor {
        quote(seller, *offer, true)
    } else {
        quote(seller, floor, false)
    }
}

/// The node's seller: answers offers as remote asks, and sits on offer 90.
pub(crate) struct FlakySeller;

impl Actor for FlakySeller {}

impl Handler<Offer> for FlakySeller {
    type Reply = Quote;
    async fn handle(&mut self, offer: Offer, _ctx: &mut Context<Self>) -> Quote {
        if offer.0 == 90 {
            HOLDING.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        price("flaky", 100, &offer)
    }
}

impl RemoteActor for FlakySeller {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().ask::<Offer>()
    }
}

/// Asks whether the node's flaky seller holds an offer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IsHolding;
impl RemoteMessage for IsHolding {
    const NAME: &'static str = "cluster-test.conversation.IsHolding";
}

/// Answers [`IsHolding`] while the seller's own mailbox is blocked.
pub(crate) struct Probe;

impl Actor for Probe {}

impl Handler<IsHolding> for Probe {
    type Reply = bool;
    async fn handle(&mut self, _: IsHolding, _ctx: &mut Context<Self>) -> bool {
        HOLDING.load(Ordering::SeqCst)
    }
}

impl RemoteActor for Probe {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().ask::<IsHolding>()
    }
}

/// Spawns the node side: the flaky seller and its probe.
pub(crate) fn spawn_node_side(proc: &Proc) -> Result<(), plexus::BoxError> {
    let seller = proc.spawn("flaky", FlakySeller)?;
    proc.expose_remote(&seller)?;
    let probe = proc.spawn("probe", Probe)?;
    proc.expose_remote(&probe)?;
    Ok(())
}

/// The hub's seller: a local participant handling turns.
struct SteadySeller;

impl Actor for SteadySeller {}

impl Handler<Turn<Offer, Quote>> for SteadySeller {
    type Reply = ();
    async fn handle(&mut self, turn: Turn<Offer, Quote>, _ctx: &mut Context<Self>) {
        let answer = price("steady", 90, turn.request());
        let _ = turn.reply(answer);
    }
}

type Talk = Conversation<Offer, Quote>;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {WAIT:?}"))
}

/// One negotiation up to the kill: returns the conversation and the flaky seller's id.
/// The hub is returned so its gateway lives as long as the conversation.
async fn negotiate_until_killed(policy: CrashPolicy<Offer>, label: &str) -> (Talk, ActorId, Hub) {
    let hub = hub().await;
    let mut node = start_node(label).await;
    let flaky = within(
        "the lookup of the flaky seller",
        hub.proc.lookup_remote::<FlakySeller>(&node.addr, "flaky"),
    )
    .await
    .unwrap();
    let probe = within(
        "the lookup of the probe",
        hub.proc.lookup_remote::<Probe>(&node.addr, "probe"),
    )
    .await
    .unwrap();
    let flaky_id = flaky.id().clone();
    let steady = hub.proc.spawn("steady", SteadySeller).unwrap();
    let talk = Talk::builder()
        .routing(Routing::FirstLive)
        .on_crash(policy)
        .participant(RemoteParticipant::new(flaky))
        .participant(steady)
        .start()
        .unwrap();

    talk.send(Offer(80)).await.unwrap();
    within("the counter to be buffered", async {
        while talk.state().buffered != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    talk.send(Offer(90)).await.unwrap();
    within("the held offer", async {
        while !probe.ask_timeout(IsHolding, WAIT).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(talk.state().open_turns, 1);
    let exit = talk.notify_exit(&flaky_id).unwrap();

    node.child.start_kill().unwrap();
    let _ = node.child.wait().await;
    let exit = within("the flaky seller's exit notice", exit)
        .await
        .unwrap();
    assert_eq!(exit.participant, flaky_id);
    assert_eq!(
        (exit.reason, exit.crashed),
        (StopReason::Disconnected, true)
    );
    (talk, flaky_id, hub)
}

fn assert_flaky_crashed(talk: &Talk, flaky: &ActorId) {
    let state = talk.state();
    assert_eq!(&state.participants[0].id, flaky);
    assert_eq!(
        state.participants[0].liveness,
        Liveness::Crashed(StopReason::Disconnected)
    );
    assert_eq!(state.participants[1].liveness, Liveness::Alive);
}

pub(crate) async fn killed_participant_under_each_policy() {
    // Fail: the buffered counter, then ParticipantCrashed with Disconnected.
    let (talk, flaky, _hub) = negotiate_until_killed(CrashPolicy::Fail, "market-fail").await;
    let crashed = ConversationError::ParticipantCrashed {
        participant: flaky.clone(),
        reason: StopReason::Disconnected,
    };
    assert_eq!(
        within("the counter", talk.receive()).await,
        Ok(quote("flaky", 100, false))
    );
    assert_eq!(
        within("the failure", talk.receive()).await,
        Err(crashed.clone())
    );
    let state = talk.state();
    assert_eq!(state.phase, ConversationPhase::Failed);
    assert_eq!(state.failure, Some(crashed.clone()));
    assert_eq!((state.sent, state.received), (2, 1));
    assert_flaky_crashed(&talk, &flaky);
    assert_eq!(talk.send(Offer(95)).await, Err(crashed));
    println!("  Fail: buffered reply, then ParticipantCrashed(Disconnected)");

    // RouteToNext: the held offer goes to the steady seller, which accepts it.
    let (talk, flaky, _hub) =
        negotiate_until_killed(CrashPolicy::RouteToNext, "market-route").await;
    assert_eq!(
        within("the counter", talk.receive()).await,
        Ok(quote("flaky", 100, false))
    );
    assert_eq!(
        within("the steady seller's deal", talk.receive()).await,
        Ok(quote("steady", 90, true))
    );
    talk.send(Offer(95)).await.unwrap();
    assert_eq!(
        within("the next deal", talk.receive()).await,
        Ok(quote("steady", 95, true))
    );
    talk.complete().unwrap();
    let state = talk.state();
    assert_eq!(state.phase, ConversationPhase::Closed);
    assert_eq!((state.sent, state.received), (3, 3));
    assert_eq!(state.failure, None);
    assert_flaky_crashed(&talk, &flaky);
    println!("  RouteToNext: the held offer was answered by the live seller, deal closed");

    // Compensate: runs once with the work done and the unanswered offer.
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
    let (talk, flaky, _hub) = negotiate_until_killed(policy, "market-compensate").await;
    let report = within("the compensation", report_rx).await.unwrap();
    assert_eq!(report.participant, flaky);
    assert_eq!(report.reason, StopReason::Disconnected);
    assert_eq!(report.completed.len(), 1);
    assert_eq!(report.completed[0].request, Offer(80));
    assert_eq!(report.unanswered, [Offer(90)]);
    let outcome = ConversationError::Compensated {
        participant: flaky.clone(),
        reason: StopReason::Disconnected,
    };
    assert_eq!(
        within("the counter", talk.receive()).await,
        Ok(quote("flaky", 100, false))
    );
    assert_eq!(
        within("the outcome", talk.receive()).await,
        Err(outcome.clone())
    );
    assert_eq!(talk.state().failure, Some(outcome));
    assert_flaky_crashed(&talk, &flaky);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the compensation ran exactly once"
    );
    println!("  Compensate: compensation ran once, then Compensated(Disconnected)");
}
