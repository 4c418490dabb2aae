//! Supervision of children that live on another proc (issue 5, point 3): a parent spawns
//! a child on a remote proc with `Context::spawn_remote_child` and supervises it like a
//! local one. Procs are joined by the shared real route of `net.rs` (postcard
//! on one side, `deliver_remote_to` on the other).

use std::sync::Arc;
use std::time::Duration;

use plexus_core::{
    Actor, ActorId, AskError, ChildSpec, Context, DeliveryError, Handler, Location, Placement,
    Proc, ProcId, RegisterSpawnableError, RemoteActor, RemoteAskError, RemoteChild,
    RemoteChildSpec, RemoteHandlers, RemoteMessage, RemoteSpawnError, Restart, SpawnRefusal,
    StopReason, Strategy, Supervision,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::common::{Crash, Crashy, within};
use crate::net::{Net, addr};

// ---------------------------------------------------------------------------------------
// Actors and messages.

/// The remote child: adds numbers, panics on request, stops on request.
struct Worker {
    total: u64,
}

impl Actor for Worker {}

#[derive(Serialize, Deserialize)]
struct Add(u64);
impl RemoteMessage for Add {
    const NAME: &'static str = "supervision.Add";
}
impl Handler<Add> for Worker {
    type Reply = u64;
    async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> u64 {
        self.total += n;
        self.total
    }
}

#[derive(Serialize, Deserialize)]
struct Boom;
impl RemoteMessage for Boom {
    const NAME: &'static str = "supervision.Boom";
}
impl Handler<Boom> for Worker {
    type Reply = ();
    async fn handle(&mut self, _: Boom, _ctx: &mut Context<Self>) {
        panic!("boom requested");
    }
}

#[derive(Serialize, Deserialize)]
struct Quit;
impl RemoteMessage for Quit {
    const NAME: &'static str = "supervision.Quit";
}
impl Handler<Quit> for Worker {
    type Reply = ();
    async fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl RemoteActor for Worker {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new()
            .ask::<Add>()
            .ask::<Boom>()
            .tell::<Quit>()
    }
}

/// The arguments of the `worker` kind.
#[derive(Serialize, Deserialize)]
struct WorkerArgs {
    start: u64,
}

/// Registers the kinds the tests use: `worker`, and `broken`, whose factory panics.
fn register_kinds(proc: &Proc) {
    proc.register_spawnable("worker", |args: WorkerArgs| Worker { total: args.start })
        .unwrap();
    proc.register_spawnable("broken", |_: WorkerArgs| -> Worker {
        panic!("factory failed on purpose")
    })
    .unwrap();
}

/// The supervising parent, with the policy it is given.
struct Boss {
    policy: Supervision,
}

impl Actor for Boss {
    fn supervision(&self) -> Supervision {
        self.policy
    }
}

/// Spawns a remote child from the spec.
struct Place(RemoteChildSpec);
impl Handler<Place> for Boss {
    type Reply = Result<RemoteChild<Worker>, RemoteSpawnError>;
    async fn handle(&mut self, Place(spec): Place, ctx: &mut Context<Self>) -> Self::Reply {
        ctx.spawn_remote_child(spec)
    }
}

/// Spawns a local crashy child.
struct PlaceLocal(&'static str);
impl Handler<PlaceLocal> for Boss {
    type Reply = plexus_core::ActorRef<Crashy>;
    async fn handle(
        &mut self,
        PlaceLocal(name): PlaceLocal,
        ctx: &mut Context<Self>,
    ) -> Self::Reply {
        ctx.spawn_child(ChildSpec::new(name, || Crashy)).unwrap()
    }
}

/// The ids of the boss's children.
struct Kids;
impl Handler<Kids> for Boss {
    type Reply = Vec<ActorId>;
    async fn handle(&mut self, _: Kids, ctx: &mut Context<Self>) -> Vec<ActorId> {
        ctx.children()
    }
}

/// Procs A (`local:1`, the boss), B (`local:2`) and C (`local:3`), the kinds registered
/// on B and C.
struct Cluster {
    net: Arc<Net>,
    a: Proc,
    b: Proc,
    c: Proc,
}

fn cluster() -> Cluster {
    let net = Arc::new(Net::default());
    let a = net.proc("a", 1);
    let b = net.proc("b", 2);
    let c = net.proc("c", 3);
    register_kinds(&b);
    register_kinds(&c);
    Cluster { net, a, b, c }
}

impl Cluster {
    fn spec(&self, name: &str) -> RemoteChildSpec {
        RemoteChildSpec::new(name, "worker", &WorkerArgs { start: 100 })
            .unwrap()
            .on(addr(&self.b, 2))
            .on(addr(&self.c, 3))
            .spawn_timeout(Duration::from_secs(2))
    }

    fn boss(&self, policy: Supervision) -> plexus_core::ActorRef<Boss> {
        self.a.spawn("boss", Boss { policy }).unwrap()
    }
}

fn generation<A: Actor>(child: &RemoteChild<A>) -> Option<u32> {
    match child.placement() {
        Placement::Placed { generation, .. } => Some(generation),
        _ => None,
    }
}

/// Polls `condition` until it holds, failing with `what` after 10 seconds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Tests.

/// A remote child is spawned on the first candidate, is reached through a remote ref,
/// and is listed among the parent's children under its stand-in's id.
#[tokio::test]
async fn remote_child_is_spawned_on_the_first_candidate() {
    let cl = cluster();
    let boss = cl.boss(Supervision::default());
    let child = boss.ask(Place(cl.spec("worker"))).await.unwrap().unwrap();
    let worker = within("placement", child.ready()).await.unwrap();
    assert!(worker.is_remote());
    assert_eq!(worker.id().proc(), cl.b.id());
    assert_eq!(worker.id().name(), "worker");
    assert_eq!(within("ask", worker.ask(Add(1))).await.unwrap(), 101);
    assert_eq!(child.current(), Some(worker.clone()));
    assert_eq!(generation(&child), Some(1));
    assert_eq!(boss.ask(Kids).await.unwrap(), vec![child.id().clone()]);
    assert_eq!(child.id().proc(), cl.a.id());
    // The link is registered both ways.
    eventually("the link", || cl.a.remote_watch_count() == 1).await;
    eventually("the link-back", || cl.b.remote_watch_count() == 1).await;
}

/// A remote child that panics is restarted on the same proc, as a new actor with fresh
/// state; the restart is counted against the parent's budget, so with a budget of one
/// the second panic escalates: the parent stops with `Escalated`, naming the stand-in and
/// the child's panic, as it does for a local child.
#[tokio::test]
async fn panicking_remote_child_restarts_on_the_same_proc_then_escalates() {
    let cl = cluster();
    let policy = Supervision::new(Strategy::OneForOne).budget(1, Duration::from_secs(60));
    let boss = cl.boss(policy);
    let child = boss.ask(Place(cl.spec("worker"))).await.unwrap().unwrap();
    let first = within("placement", child.ready()).await.unwrap();
    assert_eq!(within("ask", first.ask(Add(5))).await.unwrap(), 105);

    let error = within("boom", first.ask(Boom)).await.unwrap_err();
    assert!(matches!(error, AskError::Panicked { .. }), "{error:?}");
    let second = within("the restart", child.replaced(&first)).await.unwrap();
    assert_eq!(second.id().proc(), cl.b.id(), "restarted on the same proc");
    assert_ne!(second.id(), first.id());
    assert_eq!(generation(&child), Some(2));
    assert_eq!(
        within("fresh state", second.ask(Add(1))).await.unwrap(),
        101
    );
    // The old ref reaches nothing: it named the first placement.
    let stale = within("stale ask", first.ask(Add(1))).await.unwrap_err();
    assert!(matches!(stale, AskError::NotFound { .. }), "{stale:?}");

    let error = within("second boom", second.ask(Boom)).await.unwrap_err();
    assert!(matches!(error, AskError::Panicked { .. }), "{error:?}");
    let reason = within("the escalation", boss.wait_for_stop()).await;
    match reason {
        StopReason::Escalated { child: who, reason } => {
            assert_eq!(&who, child.id());
            assert!(
                matches!(&*reason, StopReason::Panicked(why) if why.contains("boom requested")),
                "{reason:?}"
            );
        }
        other => panic!("expected Escalated, got {other:?}"),
    }
    let error = within("stopped for good", child.replaced(&second))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RemoteSpawnError::Stopped { .. }),
        "{error:?}"
    );
}

/// When the child's proc is lost (`peer_lost`, and the route failing `Disconnected`),
/// the child is restarted on the next candidate; the orphan on the lost proc, which
/// learns of the loss through its link, stops with `LinkDied(Disconnected)`.
#[tokio::test]
async fn lost_proc_moves_the_child_to_the_fallback() {
    let cl = cluster();
    let boss = cl.boss(Supervision::default());
    let child = boss.ask(Place(cl.spec("worker"))).await.unwrap().unwrap();
    let first = within("placement", child.ready()).await.unwrap();
    assert_eq!(first.id().proc(), cl.b.id());
    eventually("the link", || cl.a.remote_watch_count() == 1).await;
    eventually("the link-back", || cl.b.remote_watch_count() == 1).await;
    let orphan = cl.b.lookup::<Worker>("worker").unwrap();

    cl.net.set_down(&Location::Local(2), true);
    assert_eq!(cl.a.peer_lost(&Location::Local(2)), 1);
    let moved = within("the move", child.replaced(&first)).await.unwrap();
    assert_eq!(moved.id().proc(), cl.c.id(), "placed on the fallback");
    assert_eq!(within("ask", moved.ask(Add(2))).await.unwrap(), 102);
    assert_eq!(generation(&child), Some(2));

    // B sees A lost too: its link fires and the orphan stops.
    assert_eq!(cl.b.peer_lost(&Location::Local(1)), 1);
    let reason = within("the orphan's stop", orphan.wait_for_stop()).await;
    assert!(
        matches!(&reason, StopReason::LinkDied { reason, .. } if **reason == StopReason::Disconnected),
        "{reason:?}"
    );

    // Lost again: C goes down; B is back, so the child comes back to B.
    cl.net.set_down(&Location::Local(2), false);
    cl.net.set_down(&Location::Local(3), true);
    assert_eq!(cl.a.peer_lost(&Location::Local(3)), 1);
    let back = within("the move back", child.replaced(&moved))
        .await
        .unwrap();
    assert_eq!(back.id().proc(), cl.b.id());
    assert_eq!(generation(&child), Some(3));
}

/// A group strategy treats a remote child as any other: with one-for-all, a crash of a
/// local sibling ends the remote child's incarnation and places it again.
#[tokio::test]
async fn one_for_all_restarts_the_remote_child_with_its_siblings() {
    let cl = cluster();
    let boss = cl.boss(Supervision::new(Strategy::OneForAll));
    let child = boss.ask(Place(cl.spec("worker"))).await.unwrap().unwrap();
    let first = within("placement", child.ready()).await.unwrap();
    let local = boss.ask(PlaceLocal("local")).await.unwrap();
    local.tell(Crash).await.unwrap();
    let second = within("the group restart", child.replaced(&first))
        .await
        .unwrap();
    assert_eq!(second.id().proc(), cl.b.id());
    // The first placement was stopped by its stand-in before the restart.
    let reason = within("the first stop", first.wait_for_stop()).await;
    assert!(
        matches!(reason, StopReason::Stopped | StopReason::NotFound),
        "{reason:?}"
    );
    assert_eq!(within("ask", second.ask(Add(0))).await.unwrap(), 100);
    eventually("the first link released", || {
        cl.a.remote_watch_count() == 1 && cl.b.remote_watch_count() == 1
    })
    .await;
}

/// A transient child that stops normally is not placed again, and its handle says it
/// stopped; stopping the parent stops a placed child on its proc.
#[tokio::test]
async fn transient_child_ends_on_a_normal_stop_and_children_stop_with_the_parent() {
    let cl = cluster();
    let boss = cl.boss(Supervision::default());
    let transient = boss
        .ask(Place(cl.spec("transient").restart(Restart::Transient)))
        .await
        .unwrap()
        .unwrap();
    let worker = within("placement", transient.ready()).await.unwrap();
    worker.tell(Quit).await.unwrap();
    let error = within("the end", transient.replaced(&worker))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        RemoteSpawnError::Stopped {
            reason: StopReason::Normal
        }
    );
    within("the stand-in to go", async {
        while !boss.ask(Kids).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let permanent = boss
        .ask(Place(cl.spec("permanent")))
        .await
        .unwrap()
        .unwrap();
    let placed = within("placement", permanent.ready()).await.unwrap();
    let on_b = cl.b.lookup::<Worker>("permanent").unwrap();
    boss.stop();
    within("the boss's stop", boss.wait_for_stop()).await;
    assert_eq!(
        within("the child's stop", on_b.wait_for_stop()).await,
        StopReason::Stopped
    );
    assert_eq!(placed.id(), on_b.id());
}

/// A placement that fails on every candidate is a start failure: with `Restart::Never`
/// the handle reports every attempt's error, typed.
#[tokio::test]
async fn failed_placement_reports_every_attempt() {
    let cl = cluster();
    let boss = cl.boss(Supervision::default());
    let spec = RemoteChildSpec::new("worker", "nonesuch", &WorkerArgs { start: 0 })
        .unwrap()
        .on(addr(&cl.b, 2))
        .on(addr(&cl.c, 3))
        .restart(Restart::Never);
    let child = boss.ask(Place(spec)).await.unwrap().unwrap();
    let error = within("the failure", child.ready()).await.unwrap_err();
    let RemoteSpawnError::NoPlacement { attempts } = &error else {
        panic!("expected NoPlacement, got {error:?}");
    };
    assert_eq!(attempts.len(), 2);
    for (attempt, proc) in attempts.iter().zip([&cl.b, &cl.c]) {
        assert!(
            matches!(
                attempt,
                RemoteSpawnError::Refused { proc: at, refusal: SpawnRefusal::UnknownKind { kind } }
                    if at.proc == *proc.id() && kind == "nonesuch"
            ),
            "{attempt:?}"
        );
    }
    let no_candidates = RemoteChildSpec::new("x", "worker", &WorkerArgs { start: 0 }).unwrap();
    let error = boss.ask(Place(no_candidates)).await.unwrap().unwrap_err();
    assert!(
        matches!(error, RemoteSpawnError::NoCandidates { .. }),
        "{error:?}"
    );
}

/// Every way a remote spawn can fail is a typed error and never a panic: unknown kind,
/// arguments that do not decode, a name taken, a factory that panics, an unreachable
/// proc, no route, a malformed request; registering a kind twice is refused.
#[tokio::test]
async fn remote_spawn_errors_are_typed() {
    let cl = cluster();
    let b = addr(&cl.b, 2);
    let spawned =
        cl.a.spawn_remote::<Worker, _>(&b, "w1", "worker", &WorkerArgs { start: 7 })
            .await
            .unwrap();
    assert_eq!(within("ask", spawned.ask(Add(0))).await.unwrap(), 7);

    let refusal = |result: Result<_, RemoteSpawnError>| match result {
        Err(RemoteSpawnError::Refused { refusal, .. }) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let unknown =
        cl.a.spawn_remote::<Worker, _>(&b, "w2", "nonesuch", &WorkerArgs { start: 0 })
            .await;
    assert!(matches!(refusal(unknown), SpawnRefusal::UnknownKind { .. }));
    let bad_args =
        cl.a.spawn_remote::<Worker, _>(&b, "w2", "worker", &())
            .await;
    assert!(matches!(refusal(bad_args), SpawnRefusal::Decode { .. }));
    let taken =
        cl.a.spawn_remote::<Worker, _>(&b, "w1", "worker", &WorkerArgs { start: 0 })
            .await;
    assert_eq!(
        refusal(taken),
        SpawnRefusal::NameTaken {
            name: "w1".to_owned()
        }
    );
    let broken =
        cl.a.spawn_remote::<Worker, _>(&b, "w3", "broken", &WorkerArgs { start: 0 })
            .await;
    assert!(
        matches!(refusal(broken), SpawnRefusal::SpawnFailed { reason, .. } if reason.contains("factory failed")),
    );

    cl.net.set_down(&Location::Local(3), true);
    let down =
        cl.a.spawn_remote::<Worker, _>(&addr(&cl.c, 3), "w4", "worker", &WorkerArgs { start: 0 })
            .await;
    assert!(
        matches!(
            &down,
            Err(RemoteSpawnError::Ask { error, .. }) if matches!(**error, AskError::Disconnected { .. })
        ),
        "{down:?}"
    );
    let isolated = Proc::new(ProcId::unique("isolated"));
    let no_route = isolated
        .spawn_remote::<Worker, _>(&b, "w5", "worker", &WorkerArgs { start: 0 })
        .await;
    assert!(
        matches!(
            &no_route,
            Err(RemoteSpawnError::Ask { error, .. }) if matches!(**error, AskError::Unroutable { .. })
        ),
        "{no_route:?}"
    );

    // A malformed request is answered `Decode`, and nothing panics.
    let (reply, answer) = oneshot::channel();
    let delivered = cl.b.deliver_remote(
        "$sys",
        "$sys.Spawn",
        &[0xff, 0xff, 0xff],
        Some(Box::new(move |outcome| {
            let _ = reply.send(outcome);
        })),
    );
    assert!(
        matches!(delivered, Err(DeliveryError::Decode { .. })),
        "{delivered:?}"
    );
    let answered = within("the answer", answer).await.unwrap();
    assert!(
        matches!(answered, Err(RemoteAskError::Decode { .. })),
        "{answered:?}"
    );

    let again =
        cl.b.register_spawnable("worker", |args: WorkerArgs| Worker { total: args.start });
    assert!(matches!(
        again,
        Err(RegisterSpawnableError::KindTaken { kind: "worker", .. })
    ));
    let mut kinds = cl.b.spawnable_kinds();
    kinds.sort_unstable();
    assert_eq!(kinds, vec!["broken", "worker"]);
    assert!(cl.a.spawnable_kinds().is_empty());
}

/// A restart on the same proc waits for the old actor to free its name: an actor that
/// stops and is placed again at once finds the name free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_on_the_same_proc_reuse_the_name() {
    let cl = cluster();
    let policy = Supervision::new(Strategy::OneForOne).budget(50, Duration::from_secs(60));
    let boss = cl.boss(policy);
    let child = boss.ask(Place(cl.spec("worker"))).await.unwrap().unwrap();
    let mut current = within("placement", child.ready()).await.unwrap();
    for round in 0..10u32 {
        let _ = within("boom", current.ask(Boom)).await;
        let next = within("the restart", child.replaced(&current))
            .await
            .unwrap();
        assert_eq!(next.id().proc(), cl.b.id(), "round {round}");
        assert_eq!(within("ask", next.ask(Add(0))).await.unwrap(), 100);
        current = next;
    }
    assert_eq!(generation(&child), Some(11));
    // Links of earlier placements were released on both sides: one link each way remains.
    eventually("earlier links released here", || {
        cl.a.remote_watch_count() == 1
    })
    .await;
    eventually("earlier links released there", || {
        cl.b.remote_watch_count() == 1
    })
    .await;
}
