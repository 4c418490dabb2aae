//! Supervision: restart policies, strategies, budgets and escalation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_core::{
    Actor, ActorRef, BoxError, ChildSpec, Context, Handler, Proc, ProcId, Restart, StopReason,
    Strategy, Supervision,
};

use crate::common::{Crash, Crashy, Ping, within};

/// Starts of each child, by name, counted by the factories.
type Starts = Arc<Mutex<HashMap<String, u32>>>;

/// A supervisor with a fixed list of children, all `Crashy`.
struct Supervisor {
    policy: Supervision,
    names: Vec<&'static str>,
    restart: Restart,
    starts: Starts,
    children: Vec<ActorRef<Crashy>>,
}

impl Supervisor {
    fn new(policy: Supervision, names: &[&'static str], restart: Restart) -> Self {
        Supervisor {
            policy,
            names: names.to_vec(),
            restart,
            starts: Starts::default(),
            children: Vec::new(),
        }
    }
}

impl Actor for Supervisor {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.children.clear();
        for name in self.names.clone() {
            let starts = self.starts.clone();
            let spec = ChildSpec::new(name, move || {
                *starts.lock().unwrap().entry(name.to_owned()).or_default() += 1;
                Crashy
            })
            .restart(self.restart);
            self.children.push(ctx.spawn_child(spec)?);
        }
        Ok(())
    }

    fn supervision(&self) -> Supervision {
        self.policy
    }
}

/// Returns the supervisor's children refs.
struct Children;
impl Handler<Children> for Supervisor {
    type Reply = Vec<ActorRef<Crashy>>;
    async fn handle(&mut self, _: Children, _ctx: &mut Context<Self>) -> Vec<ActorRef<Crashy>> {
        self.children.clone()
    }
}

fn starts(starts: &Starts) -> Vec<(String, u32)> {
    let mut all: Vec<_> = starts
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    all.sort();
    all
}

async fn crash_middle_child(strategy: Strategy) -> (Vec<(String, u32)>, Vec<u32>) {
    let proc = Proc::new(ProcId::unique("sup"));
    let sup = Supervisor::new(
        Supervision::new(strategy),
        &["a", "b", "c"],
        Restart::Permanent,
    );
    let counted = sup.starts.clone();
    let sup = proc.spawn("sup", sup).unwrap();
    let children = within("children", sup.ask(Children)).await.unwrap();
    children[1].tell(Crash).await.unwrap();
    // The crashed child answers only after its (group) restart is complete.
    assert_eq!(within("b to restart", children[1].ask(Ping)).await, Ok(1));
    let mut restarts = Vec::new();
    for child in &children {
        restarts.push(within("a restart count", child.ask(Ping)).await.unwrap());
    }
    (starts(&counted), restarts)
}

fn expect(a: u32, b: u32, c: u32) -> Vec<(String, u32)> {
    vec![("a".into(), a), ("b".into(), b), ("c".into(), c)]
}

/// One-for-one restarts only the child that failed.
#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let (starts, restarts) = crash_middle_child(Strategy::OneForOne).await;
    assert_eq!(starts, expect(1, 2, 1));
    assert_eq!(restarts, vec![0, 1, 0]);
}

/// One-for-all restarts every child when one fails.
#[tokio::test]
async fn one_for_all_restarts_every_sibling() {
    let (starts, restarts) = crash_middle_child(Strategy::OneForAll).await;
    assert_eq!(starts, expect(2, 2, 2));
    assert_eq!(restarts, vec![1, 1, 1]);
}

/// Rest-for-one restarts the failed child and those started after it, not those before.
#[tokio::test]
async fn rest_for_one_restarts_the_failed_child_and_later_siblings() {
    let (starts, restarts) = crash_middle_child(Strategy::RestForOne).await;
    assert_eq!(starts, expect(1, 2, 2));
    assert_eq!(restarts, vec![0, 1, 1]);
}

/// A panicking handler under a permanent policy restarts the actor; its id is unchanged
/// and the ref taken before the crash reaches the new incarnation.
#[tokio::test]
async fn panicking_child_restarts_and_ref_stays_valid() {
    let proc = Proc::new(ProcId::unique("sup"));
    let sup = proc
        .spawn(
            "sup",
            Supervisor::new(Supervision::default(), &["worker"], Restart::Permanent),
        )
        .unwrap();
    let children = within("children", sup.ask(Children)).await.unwrap();
    let worker = children[0].clone();
    let id_before = worker.id().clone();
    for expected in 1..=2 {
        worker.tell(Crash).await.unwrap();
        assert_eq!(
            within("the restarted worker", worker.ask(Ping)).await,
            Ok(expected)
        );
    }
    assert_eq!(worker.id(), &id_before);
    assert!(worker.is_alive());
    assert_eq!(
        proc.lookup::<Crashy>("worker").map(|r| r.id().clone()),
        Some(id_before)
    );
}

/// More restarts than the budget allows within its window stop the supervisor with
/// `Escalated`, naming the child and its last failure; its children stop first.
#[tokio::test]
async fn restart_budget_escalates_to_the_parent() {
    let proc = Proc::new(ProcId::unique("sup"));
    let policy = Supervision::default().budget(2, Duration::from_secs(60));
    let sup = proc
        .spawn(
            "sup",
            Supervisor::new(policy, &["worker"], Restart::Permanent),
        )
        .unwrap();
    let worker = within("children", sup.ask(Children))
        .await
        .unwrap()
        .remove(0);
    for _ in 0..3 {
        // The third crash exceeds the budget; until then each restart is answered.
        let _ = worker.tell(Crash).await;
        let _ = within("a ping", worker.ask(Ping)).await;
    }
    let reason = within("the supervisor to give up", sup.wait_for_stop()).await;
    assert_eq!(
        reason,
        StopReason::Escalated {
            child: worker.id().clone(),
            reason: Box::new(StopReason::Panicked("crash requested".into())),
        }
    );
    assert!(
        !worker.is_alive(),
        "the escalating supervisor left its child running"
    );
}

/// Escalation goes up the tree: a grandparent restarts the supervisor that gave up, which
/// starts fresh children.
#[tokio::test]
async fn escalation_is_handled_by_the_grandparent() {
    struct Root {
        sup: Option<ActorRef<Supervisor>>,
    }
    impl Actor for Root {
        async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
            let policy = Supervision::default().budget(0, Duration::from_secs(60));
            let spec = ChildSpec::new("middle", move || {
                Supervisor::new(policy, &["leaf"], Restart::Permanent)
            });
            self.sup = Some(ctx.spawn_child(spec)?);
            Ok(())
        }
    }
    struct GetSup;
    impl Handler<GetSup> for Root {
        type Reply = Option<ActorRef<Supervisor>>;
        async fn handle(&mut self, _: GetSup, _ctx: &mut Context<Self>) -> Self::Reply {
            self.sup.clone()
        }
    }

    let proc = Proc::new(ProcId::unique("sup"));
    let root = proc.spawn("root", Root { sup: None }).unwrap();
    let middle = within("middle", root.ask(GetSup)).await.unwrap().unwrap();
    let leaf = within("leaf", middle.ask(Children))
        .await
        .unwrap()
        .remove(0);
    leaf.tell(Crash).await.unwrap();
    // The middle supervisor has no budget, gives up, and is restarted by the root with a
    // new leaf (a new actor, so the old leaf ref is dead).
    within("the old leaf to stop", leaf.wait_for_stop()).await;
    let new_leaf = loop {
        let leaves = within("children after restart", middle.ask(Children))
            .await
            .unwrap();
        if leaves[0].id() != leaf.id() {
            break leaves[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(within("the new leaf", new_leaf.ask(Ping)).await, Ok(0));
    assert!(middle.is_alive());
}

/// A transient child that stops normally is not restarted; one that fails is.
#[tokio::test]
async fn transient_child_restarts_only_on_failure() {
    struct Quitter;
    impl Actor for Quitter {}
    struct Quit;
    impl Handler<Quit> for Quitter {
        type Reply = ();
        async fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }
    struct Fail;
    impl Handler<Fail> for Quitter {
        type Reply = ();
        async fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
            ctx.fail("gave up");
        }
    }
    struct Restarts;
    impl Handler<Restarts> for Quitter {
        type Reply = u32;
        async fn handle(&mut self, _: Restarts, ctx: &mut Context<Self>) -> u32 {
            ctx.restart_count()
        }
    }
    struct Parent(Vec<ActorRef<Quitter>>);
    impl Actor for Parent {
        async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
            for name in ["q1", "q2"] {
                self.0.push(
                    ctx.spawn_child(ChildSpec::new(name, || Quitter).restart(Restart::Transient))?,
                );
            }
            Ok(())
        }
    }
    struct Kids;
    impl Handler<Kids> for Parent {
        type Reply = Vec<ActorRef<Quitter>>;
        async fn handle(&mut self, _: Kids, _ctx: &mut Context<Self>) -> Self::Reply {
            self.0.clone()
        }
    }

    let proc = Proc::new(ProcId::unique("sup"));
    let parent = proc.spawn("parent", Parent(Vec::new())).unwrap();
    let kids = within("kids", parent.ask(Kids)).await.unwrap();
    kids[0].tell(Quit).await.unwrap();
    assert_eq!(
        within("q1 to stop", kids[0].wait_for_stop()).await,
        StopReason::Normal
    );
    kids[1].tell(Fail).await.unwrap();
    assert_eq!(within("q2 to restart", kids[1].ask(Restarts)).await, Ok(1));
}

/// Stopping a supervisor stops its children first, for good.
#[tokio::test]
async fn stopping_a_supervisor_stops_its_children() {
    let proc = Proc::new(ProcId::unique("sup"));
    let sup = proc
        .spawn(
            "sup",
            Supervisor::new(Supervision::default(), &["x", "y"], Restart::Permanent),
        )
        .unwrap();
    let children = within("children", sup.ask(Children)).await.unwrap();
    sup.stop();
    assert_eq!(
        within("the supervisor", sup.wait_for_stop()).await,
        StopReason::Stopped
    );
    for child in &children {
        assert!(
            !child.is_alive(),
            "child {} outlived its supervisor",
            child.id()
        );
        assert_eq!(child.wait_for_stop().await, StopReason::Shutdown);
    }
}
