//! Wait-for edges and deadlocks: cycles of actors asking each other inside handlers are
//! reported, concurrent asks keep separate edges, and a finished wait leaves no edge.

use std::time::Duration;

use plexus_core::{Actor, ActorRef, AskError, Context, Handler, Proc};
use plexus_monitor::{Monitor, Snapshot, TableOptions, WaitForGraph, render_table_with};
use tokio::sync::oneshot;

use crate::common::{Gate, Hold, eventually, monitored, within};

/// How long the first ask of a cycle waits before giving up, which ends the deadlock.
const BREAK_AFTER: Duration = Duration::from_secs(3);

/// Asks the next actor of a ring inside its handler, `hops` times around.
struct Relay {
    next: Option<ActorRef<Relay>>,
}

impl Actor for Relay {}

struct SetNext(ActorRef<Relay>);

impl Handler<SetNext> for Relay {
    type Reply = ();
    async fn handle(&mut self, SetNext(next): SetNext, _ctx: &mut Context<Self>) {
        self.next = Some(next);
    }
}

/// Passed on to the next actor until `hops` reaches zero; each ask gives up after
/// `timeout`.
struct Pass {
    hops: u32,
    timeout: Duration,
}

impl Handler<Pass> for Relay {
    type Reply = Result<u32, AskError>;
    async fn handle(&mut self, pass: Pass, _ctx: &mut Context<Self>) -> Self::Reply {
        let Some(next) = self.next.clone().filter(|_| pass.hops > 0) else {
            return Ok(0);
        };
        let onward = Pass {
            hops: pass.hops - 1,
            timeout: pass.timeout,
        };
        match next.ask_timeout(onward, pass.timeout).await {
            Ok(inner) => inner.map(|hops| hops + 1),
            Err(error) => Err(error),
        }
    }
}

/// Spawns relays named `names` and links each to the next by `order` (indexes into
/// `names`, the last linking back to the first).
async fn ring(proc: &Proc, names: &[&str], order: &[usize]) -> Vec<ActorRef<Relay>> {
    let relays: Vec<ActorRef<Relay>> = names
        .iter()
        .map(|name| proc.spawn(name, Relay { next: None }).unwrap())
        .collect();
    for (i, &from) in order.iter().enumerate() {
        let to = order[(i + 1) % order.len()];
        relays[from].ask(SetNext(relays[to].clone())).await.unwrap();
    }
    relays
}

/// Starts a message around the ring from `first` so that it comes back to `first` while
/// `first` still awaits its own ask: a deadlock until `first`'s ask times out.
fn start_cycle(first: &ActorRef<Relay>, len: u32) -> tokio::task::JoinHandle<()> {
    let first = first.clone();
    tokio::spawn(async move {
        let _ = first
            .ask(Pass {
                hops: len,
                timeout: BREAK_AFTER,
            })
            .await;
    })
}

/// Two actors asking each other inside their handlers are reported as one deadlock, and
/// once the wait times out no edge is left.
#[tokio::test]
async fn two_actor_ask_cycle_is_a_deadlock() {
    let (monitor, proc) = monitored("two");
    let relays = ring(&proc, &["a", "b"], &[0, 1]).await;
    let started = start_cycle(&relays[0], 2);

    eventually("a two-actor deadlock", || !monitor.deadlocks().is_empty()).await;
    let deadlocks = monitor.deadlocks();
    assert_eq!(deadlocks.len(), 1);
    assert_eq!(
        deadlocks[0].actors,
        vec![relays[0].id().clone(), relays[1].id().clone()]
    );
    let snapshot = monitor.snapshot(Duration::from_secs(60));
    assert_eq!(snapshot.deadlocks(), deadlocks);
    let table = render_table_with(&snapshot, &TableOptions::default());
    assert_eq!(table.matches("DEADLOCK").count(), 2, "{table}");
    assert!(
        table.contains(&format!("deadlock: {}", deadlocks[0])),
        "{table}"
    );

    within("the cycle to break", started).await.unwrap();
    eventually("every edge to go", || monitor.wait_for_graph().is_empty()).await;
    assert!(monitor.deadlocks().is_empty());
}

/// Three actors asking around a ring are reported as one cycle, in wait order and
/// starting at the smallest id.
#[tokio::test]
async fn three_actor_ask_cycle_is_a_deadlock() {
    let (monitor, proc) = monitored("three");
    // a waits for c, c for b, b for a: wait order differs from id order.
    let relays = ring(&proc, &["a", "b", "c"], &[0, 2, 1]).await;
    let started = start_cycle(&relays[0], 3);

    eventually("a three-actor deadlock", || !monitor.deadlocks().is_empty()).await;
    let deadlocks = monitor.deadlocks();
    assert_eq!(deadlocks.len(), 1);
    assert_eq!(
        deadlocks[0].actors,
        vec![
            relays[0].id().clone(),
            relays[2].id().clone(),
            relays[1].id().clone()
        ]
    );

    within("the cycle to break", started).await.unwrap();
    eventually("every edge to go", || monitor.wait_for_graph().is_empty()).await;
}

/// An ask chain that completes leaves no edge, and never looks like a deadlock.
#[tokio::test]
async fn finished_wait_leaves_no_edge() {
    let (monitor, proc) = monitored("chain");
    let relays = ring(&proc, &["a", "b", "c"], &[0, 1, 2]).await;
    // Two hops: a asks b, b asks c, c answers; nothing comes back around to a.
    let outcome = within(
        "the chain",
        relays[0].ask(Pass {
            hops: 2,
            timeout: BREAK_AFTER,
        }),
    )
    .await;
    assert_eq!(outcome, Ok(Ok(2)));
    eventually("every edge to go", || monitor.wait_for_graph().is_empty()).await;
    let snapshot = monitor.snapshot(Duration::from_secs(60));
    assert!(
        snapshot
            .actors
            .iter()
            .all(|actor| actor.waiting_for.is_empty())
    );
    assert!(snapshot.deadlocks().is_empty());
}

/// Awaits two asks at once inside one handler.
struct Fan;

impl Actor for Fan {}

struct Both {
    first: (ActorRef<Gate>, oneshot::Receiver<()>),
    second: (ActorRef<Gate>, oneshot::Receiver<()>),
}

impl Handler<Both> for Fan {
    type Reply = ();
    async fn handle(&mut self, both: Both, _ctx: &mut Context<Self>) {
        let (first, first_release) = both.first;
        let (second, second_release) = both.second;
        let _ = futures::future::join(
            first.ask(Hold(first_release)),
            second.ask(Hold(second_release)),
        )
        .await;
    }
}

/// Two asks awaited together each keep their edge: finishing one leaves the other.
#[tokio::test]
async fn concurrent_asks_keep_separate_edges() {
    let (monitor, proc) = monitored("fan");
    let fan = proc.spawn("fan", Fan).unwrap();
    let left = proc.spawn("left", Gate).unwrap();
    let right = proc.spawn("right", Gate).unwrap();
    let (release_left, left_hold) = oneshot::channel();
    let (release_right, right_hold) = oneshot::channel();
    fan.tell(Both {
        first: (left.clone(), left_hold),
        second: (right.clone(), right_hold),
    })
    .await
    .unwrap();

    let waits_of_fan = |monitor: &Monitor| {
        let snapshot = monitor.snapshot(Duration::from_secs(60));
        let fan = snapshot.actor(fan.id()).unwrap();
        fan.waiting_for
            .iter()
            .map(|ask| ask.target.clone())
            .collect::<Vec<_>>()
    };
    eventually("two edges", || waits_of_fan(&monitor).len() == 2).await;
    assert_eq!(
        waits_of_fan(&monitor),
        vec![left.id().clone(), right.id().clone()]
    );

    release_left.send(()).unwrap();
    eventually("the left edge to go", || {
        waits_of_fan(&monitor) == vec![right.id().clone()]
    })
    .await;

    release_right.send(()).unwrap();
    eventually("the right edge to go", || waits_of_fan(&monitor).is_empty()).await;
}

/// Awaits a held gate and a caller at once; the caller asks back.
struct Hub;

impl Actor for Hub {}

struct Tangle {
    gate: ActorRef<Gate>,
    hold: oneshot::Receiver<()>,
    caller: ActorRef<Caller>,
}

impl Handler<Tangle> for Hub {
    type Reply = ();
    async fn handle(&mut self, tangle: Tangle, ctx: &mut Context<Self>) {
        let myself = ctx.actor_ref().clone();
        let _ = futures::future::join(
            tangle.gate.ask(Hold(tangle.hold)),
            tangle.caller.ask_timeout(CallBack(myself), BREAK_AFTER),
        )
        .await;
    }
}

struct HubPing;

impl Handler<HubPing> for Hub {
    type Reply = ();
    async fn handle(&mut self, _: HubPing, _ctx: &mut Context<Self>) {}
}

/// Asks the hub back from inside its handler.
struct Caller;

impl Actor for Caller {}

struct CallBack(ActorRef<Hub>);

impl Handler<CallBack> for Caller {
    type Reply = ();
    async fn handle(&mut self, CallBack(hub): CallBack, _ctx: &mut Context<Self>) {
        let _ = hub.ask(HubPing).await;
    }
}

/// A cycle through one of several asks awaited together is still found: the other,
/// unrelated wait does not hide it.
#[tokio::test]
async fn cycle_through_one_of_several_asks_is_found() {
    let (monitor, proc) = monitored("tangle");
    let hub = proc.spawn("hub", Hub).unwrap();
    let gate = proc.spawn("gate", Gate).unwrap();
    let caller = proc.spawn("caller", Caller).unwrap();
    let (release, hold) = oneshot::channel();
    hub.tell(Tangle {
        gate: gate.clone(),
        hold,
        caller: caller.clone(),
    })
    .await
    .unwrap();

    eventually("the hub-caller deadlock", || {
        !monitor.deadlocks().is_empty()
    })
    .await;
    let deadlocks = monitor.deadlocks();
    assert_eq!(deadlocks.len(), 1);
    let mut expected = vec![caller.id().clone(), hub.id().clone()];
    expected.sort();
    assert_eq!(deadlocks[0].actors, expected);
    assert_eq!(monitor.wait_for_graph().edges().count(), 3);

    release.send(()).unwrap();
    eventually("every edge to go", || monitor.wait_for_graph().is_empty()).await;
}

/// Asks an actor on another proc inside its handler.
struct Remote {
    peer: Option<ActorRef<Remote>>,
}

impl Actor for Remote {}

struct Peer(ActorRef<Remote>);

impl Handler<Peer> for Remote {
    type Reply = ();
    async fn handle(&mut self, Peer(peer): Peer, _ctx: &mut Context<Self>) {
        self.peer = Some(peer);
    }
}

struct Bounce(u32);

impl Handler<Bounce> for Remote {
    type Reply = ();
    async fn handle(&mut self, Bounce(hops): Bounce, _ctx: &mut Context<Self>) {
        if let Some(peer) = self.peer.clone().filter(|_| hops > 0) {
            let _ = peer.ask_timeout(Bounce(hops - 1), BREAK_AFTER).await;
        }
    }
}

/// A cycle across two procs, each with its own monitor, is invisible to either alone and
/// found once their snapshots are merged.
#[tokio::test]
async fn cycle_across_monitors_is_found_in_merged_snapshots() {
    let (left_monitor, left_proc) = monitored("left");
    let (right_monitor, right_proc) = monitored("right");
    let left = left_proc.spawn("ping", Remote { peer: None }).unwrap();
    let right = right_proc.spawn("pong", Remote { peer: None }).unwrap();
    left.ask(Peer(right.clone())).await.unwrap();
    right.ask(Peer(left.clone())).await.unwrap();
    let started = tokio::spawn({
        let left = left.clone();
        async move { left.ask(Bounce(2)).await }
    });

    let both_waiting =
        || !left_monitor.wait_for_graph().is_empty() && !right_monitor.wait_for_graph().is_empty();
    eventually("both sides to wait", both_waiting).await;
    let parts = [
        left_monitor.snapshot(Duration::from_secs(60)),
        right_monitor.snapshot(Duration::from_secs(60)),
    ];
    assert!(parts.iter().all(|part| part.deadlocks().is_empty()));
    let from_parts = WaitForGraph::from_snapshots(&parts).deadlocks();
    let merged = Snapshot::merge(parts);
    assert_eq!(merged.deadlocks(), from_parts);
    assert_eq!(from_parts.len(), 1);
    let mut expected = vec![left.id().clone(), right.id().clone()];
    expected.sort();
    assert_eq!(from_parts[0].actors, expected);
    assert_eq!(merged.actors.len(), 2);
    assert_eq!(merged.totals.spawned, 2);

    within("the cycle to break", started)
        .await
        .unwrap()
        .unwrap();
}
