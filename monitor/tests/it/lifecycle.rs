//! Lifecycle as the monitor reports it: panics and restarts of a supervised actor, stop
//! reasons, the grave window, and totals that never go down.

use std::time::Duration;

use plexus_core::{
    Actor, ActorRef, ActorStatus, BoxError, ChildSpec, Context, Handler, Restart, StopReason,
    Supervision,
};

use crate::common::{Gate, Note, eventually, monitored, within};

/// Supervises one `Crashy` child.
struct Parent {
    child: Option<ActorRef<Crashy>>,
}

impl Actor for Parent {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.child = Some(ctx.spawn_child(ChildSpec::new("child", || Crashy))?);
        Ok(())
    }
}

struct GetChild;

impl Handler<GetChild> for Parent {
    type Reply = Option<ActorRef<Crashy>>;
    async fn handle(&mut self, _: GetChild, _ctx: &mut Context<Self>) -> Self::Reply {
        self.child.clone()
    }
}

/// Panics on `Crash`; answers `Restarts` with its restart count.
struct Crashy;

impl Actor for Crashy {}

struct Crash;

impl Handler<Crash> for Crashy {
    type Reply = ();
    async fn handle(&mut self, _: Crash, _ctx: &mut Context<Self>) {
        panic!("crash requested");
    }
}

struct Restarts;

impl Handler<Restarts> for Crashy {
    type Reply = u32;
    async fn handle(&mut self, _: Restarts, ctx: &mut Context<Self>) -> u32 {
        ctx.restart_count()
    }
}

/// A supervised actor that panics shows the panic, its message and the restart, counted
/// in its supervisor's window, and stays linked to its parent.
#[tokio::test]
async fn panicking_supervised_actor_shows_panic_and_restart() {
    let (monitor, proc) = monitored("crash");
    let parent = proc.spawn("parent", Parent { child: None }).unwrap();
    let child = within("the child", parent.ask(GetChild))
        .await
        .unwrap()
        .unwrap();
    child.tell(Crash).await.unwrap();
    assert_eq!(within("the restart", child.ask(Restarts)).await, Ok(1));

    let snapshot = monitor.snapshot(Duration::from_secs(60));
    let seen = snapshot.actor(child.id()).unwrap();
    assert_eq!(seen.status, ActorStatus::Running);
    assert_eq!(seen.panics, 1);
    assert_eq!(seen.restarts, 1);
    assert_eq!(seen.restarts_in_window, 1);
    assert_eq!(seen.last_panic.as_deref(), Some("crash requested"));
    assert_eq!(seen.parent.as_ref(), Some(parent.id()));
    assert_eq!(seen.restart, Some(Restart::Permanent));
    assert_eq!(seen.handled, 2);
    assert_eq!(seen.handled_of(std::any::type_name::<Crash>()), 1);
    assert_eq!(seen.handled_of(std::any::type_name::<Restarts>()), 1);
    assert!(seen.stop_reason.is_none());

    let supervisor = snapshot.actor(parent.id()).unwrap();
    assert_eq!(supervisor.children, vec![child.id().clone()]);
    assert_eq!(supervisor.supervision, Some(Supervision::default()));
    assert_eq!(supervisor.restart, None);

    parent.stop();
    within("the parent to stop", parent.wait_for_stop()).await;
    let snapshot = monitor.snapshot(Duration::from_secs(60));
    let child_seen = snapshot.actor(child.id()).unwrap();
    assert_eq!(child_seen.status, ActorStatus::Stopped);
    assert_eq!(child_seen.stop_reason, Some(StopReason::Shutdown));
    let parent_seen = snapshot.actor(parent.id()).unwrap();
    assert_eq!(parent_seen.stop_reason, Some(StopReason::Stopped));
    assert!(
        parent_seen.children.is_empty(),
        "a stopped child stayed listed"
    );
}

/// A stopped actor stays visible with its reason during the grave window, then
/// disappears; the totals keep counting it.
#[tokio::test]
async fn stopped_actor_disappears_after_the_grave_window() {
    let (monitor, proc) = monitored("grave");
    let brief = proc.spawn("brief", Gate).unwrap();
    for _ in 0..3 {
        brief.tell(Note).await.unwrap();
    }
    brief.stop_gracefully();
    within("the stop", brief.wait_for_stop()).await;

    let before = monitor.snapshot(Duration::from_secs(60));
    let grave = before.actor(brief.id()).unwrap();
    assert_eq!(grave.status, ActorStatus::Stopped);
    assert_eq!(grave.stop_reason, Some(StopReason::Stopped));
    assert!(grave.stopped_for.is_some());
    assert_eq!(grave.handled, 3);

    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = monitor.snapshot(Duration::from_millis(50));
    assert!(
        after.actor(brief.id()).is_none(),
        "the grave outlived its window"
    );
    assert_eq!(after.totals.spawned, 1);
    assert_eq!(after.totals.stopped, 1);
    assert_eq!(after.totals.alive, 0);
    assert_eq!(after.totals.messages, 3);

    // A longer window later does not bring a reaped actor back.
    let later = monitor.snapshot(Duration::from_secs(60));
    assert!(later.actor(brief.id()).is_none());
}

/// Totals count every spawn, stop and handled message, and reaping stopped actors never
/// makes them go down.
#[tokio::test]
async fn totals_stay_monotonic_across_reaping() {
    let (monitor, proc) = monitored("totals");
    let gates: Vec<_> = (0..3)
        .map(|i| proc.spawn(&format!("gate-{i}"), Gate).unwrap())
        .collect();
    for gate in &gates {
        for _ in 0..10 {
            gate.tell(Note).await.unwrap();
        }
    }
    let handled = |monitor: &plexus_monitor::Monitor| {
        monitor.snapshot(Duration::from_secs(60)).totals.messages
    };
    eventually("30 messages handled", || handled(&monitor) == 30).await;

    let mut last = monitor.snapshot(Duration::from_secs(60)).totals;
    for gate in &gates[..2] {
        gate.stop();
        within("the stop", gate.wait_for_stop()).await;
        // A zero window reaps every stopped actor at once.
        let now = monitor.snapshot(Duration::ZERO).totals;
        assert!(now.messages >= last.messages, "{now:?} after {last:?}");
        assert!(now.spawned >= last.spawned && now.stopped >= last.stopped);
        last = now;
    }
    let snapshot = monitor.snapshot(Duration::ZERO);
    assert_eq!(snapshot.actors.len(), 1);
    assert_eq!(snapshot.totals.messages, 30);
    assert_eq!(snapshot.totals.spawned, 3);
    assert_eq!(snapshot.totals.stopped, 2);
    assert_eq!(snapshot.totals.alive, 1);
}
