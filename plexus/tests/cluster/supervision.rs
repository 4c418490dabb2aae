//! Scenario [`supervisor_moves_child_off_a_killed_node`]: a supervisor in the hub keeps a
//! child running on a node process; when that process is killed, the supervisor places
//! the child again on the other node, and the work goes on there.

use std::time::{Duration, Instant};

use plexus::{
    Actor, BoxError, Context, Handler, Placement, Proc, RemoteActor, RemoteChild, RemoteChildSpec,
    RemoteHandlers, RemoteMessage, RemoteSpawnError,
};
use serde::{Deserialize, Serialize};

use crate::{hub, start_node};

/// The spawnable kind every node registers.
const TALLY: &str = "cluster-test.tally";

/// The supervised child: keeps a running total.
pub(crate) struct Tally {
    total: u64,
}

impl Actor for Tally {}

/// An ask: adds `n`, answered with the total.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Bump(pub(crate) u64);

impl RemoteMessage for Bump {
    const NAME: &'static str = "cluster-test.Bump";
}

impl Handler<Bump> for Tally {
    type Reply = u64;
    async fn handle(&mut self, Bump(n): Bump, _ctx: &mut Context<Self>) -> u64 {
        self.total += n;
        self.total
    }
}

impl RemoteActor for Tally {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().ask::<Bump>()
    }
}

/// Registers the kinds a node offers to supervisors elsewhere; a node calls it at start.
pub(crate) fn register_kinds(proc: &Proc) -> Result<(), BoxError> {
    proc.register_spawnable(TALLY, |start: u64| Tally { total: start })?;
    Ok(())
}

/// The hub's supervisor, with the default supervision.
struct Boss;

impl Actor for Boss {}

/// Places a tally under the boss.
struct Place(RemoteChildSpec);

impl Handler<Place> for Boss {
    type Reply = Result<RemoteChild<Tally>, RemoteSpawnError>;
    async fn handle(&mut self, Place(spec): Place, ctx: &mut Context<Self>) -> Self::Reply {
        ctx.spawn_remote_child(spec)
    }
}

pub(crate) async fn supervisor_moves_child_off_a_killed_node() {
    let hub = hub().await;
    let mut x = start_node("node-x").await;
    let y = start_node("node-y").await;
    let boss = hub.proc.spawn("boss", Boss).unwrap();
    let spec = RemoteChildSpec::new("tally", TALLY, &10u64)
        .unwrap()
        .on(x.addr.clone())
        .on(y.addr.clone())
        .spawn_timeout(Duration::from_secs(3));
    let child = boss.ask(Place(spec)).await.unwrap().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), child.ready())
        .await
        .expect("the first placement within 10 s")
        .unwrap();
    assert_eq!(first.id().proc(), &x.addr.proc, "placed on the first node");
    assert_eq!(
        first
            .ask_timeout(Bump(1), Duration::from_secs(5))
            .await
            .unwrap(),
        11
    );

    x.child.start_kill().unwrap();
    let killed = Instant::now();
    let _ = x.child.wait().await;
    let moved = tokio::time::timeout(Duration::from_secs(10), child.replaced(&first))
        .await
        .expect("the child placed again within 10 s of the kill")
        .unwrap();
    let took = killed.elapsed();
    assert_eq!(moved.id().proc(), &y.addr.proc, "placed on the other node");
    assert_eq!(
        moved
            .ask_timeout(Bump(2), Duration::from_secs(5))
            .await
            .unwrap(),
        12,
        "the new placement starts from the spec's arguments"
    );
    let generation = match child.placement() {
        Placement::Placed { generation, .. } => generation,
        other => panic!("expected a placement, got {other:?}"),
    };
    assert_eq!(generation, 2);
    println!("  child moved from node-x to node-y {took:?} after the kill");
    boss.stop();
    let _ = boss.wait_for_stop().await;
    drop(y);
}
