//! The proc: names, lookup, shutdown and spawn errors.

use plexus_core::{Proc, ProcId, SpawnError, StopReason};

use crate::common::{Crashy, Ping, within};

/// Names are unique among live actors; a stopped actor's name is free again, and lookup
/// finds only live actors of the right type.
#[tokio::test]
async fn names_are_unique_among_live_actors() {
    let proc = Proc::new(ProcId::new("names", 1));
    let first = proc.spawn("one", Crashy).unwrap();
    assert!(matches!(
        proc.spawn("one", Crashy),
        Err(SpawnError::NameTaken { .. })
    ));
    assert_eq!(proc.lookup::<Crashy>("one"), Some(first.clone()));
    assert!(
        proc.lookup::<crate::common::Recorder>("one").is_none(),
        "lookup ignored the type"
    );
    first.stop();
    within("stop", first.wait_for_stop()).await;
    assert!(proc.lookup::<Crashy>("one").is_none());
    let second = proc.spawn("one", Crashy).unwrap();
    assert_ne!(first.id(), second.id());
    assert_eq!(within("ping", second.ask(Ping)).await, Ok(0));
}

/// Shutdown stops every actor with `Shutdown` and refuses later spawns.
#[tokio::test]
async fn shutdown_stops_everything() {
    let proc = Proc::new(ProcId::unique("shutdown"));
    let actors: Vec<_> = (0..10)
        .map(|i| proc.spawn(&format!("a{i}"), Crashy).unwrap())
        .collect();
    within("shutdown", proc.shutdown()).await;
    for actor in &actors {
        assert_eq!(actor.wait_for_stop().await, StopReason::Shutdown);
    }
    assert!(proc.actor_ids().is_empty());
    assert!(matches!(
        proc.spawn("late", Crashy),
        Err(SpawnError::ProcShutDown { .. })
    ));
}

/// Spawning outside a tokio runtime is an error, not a panic.
#[test]
fn spawn_outside_runtime_is_an_error() {
    let proc = Proc::new(ProcId::unique("no-runtime"));
    assert_eq!(proc.spawn("x", Crashy).unwrap_err(), SpawnError::NoRuntime);
}

/// An actor whose runtime shuts down is still seen as stopped: `wait_for_stop` returns
/// `Shutdown` instead of hanging, and the proc forgets its name.
#[test]
fn runtime_shutdown_stops_actors_visibly() {
    let proc = Proc::new(ProcId::unique("dropped-runtime"));
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let actor = first.block_on(async { proc.spawn("orphan", Crashy).unwrap() });
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reason = second.block_on(async { within("the stop", actor.wait_for_stop()).await });
    assert_eq!(reason, StopReason::Shutdown);
    assert!(proc.lookup::<Crashy>("orphan").is_none());
}
