//! Mailbox and handler figures: live depth behind a slow handler, the running handler and
//! its elapsed time, per-type counts.

use std::time::Duration;

use plexus_core::Mailbox;
use plexus_monitor::{TableOptions, render_table_with};
use tokio::sync::oneshot;

use crate::common::{Gate, Hold, Note, Ping, eventually, monitored, within};

/// While an actor sits in a slow handler, the snapshot shows the live mailbox depth, the
/// handler that runs and for how long; afterwards the per-type counts are exact.
#[tokio::test]
async fn live_depth_and_running_handler_behind_a_slow_handler() {
    let (monitor, proc) = monitored("slow");
    let gate = proc.spawn_with("gate", Gate, Mailbox::Bounded(16)).unwrap();
    let (release, hold) = oneshot::channel();
    gate.tell(Hold(hold)).await.unwrap();
    for _ in 0..5 {
        gate.tell(Note).await.unwrap();
    }

    let hold_type = std::any::type_name::<Hold>();
    eventually("the gate to hold with 5 queued", || {
        let snapshot = monitor.snapshot(Duration::from_secs(60));
        let seen = snapshot.actor(gate.id()).unwrap();
        seen.depth == 5
            && seen
                .handling
                .as_ref()
                .is_some_and(|handler| handler.message_type == hold_type)
    })
    .await;
    let live = monitor.actor(gate.id()).unwrap();
    assert_eq!(live.mailbox_depth(), 5);
    assert_eq!(live.handling(), Some(hold_type));
    assert_eq!(live.handled(), 1);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let snapshot = monitor.snapshot(Duration::from_secs(60));
    let seen = snapshot.actor(gate.id()).unwrap();
    assert_eq!(seen.depth, 5);
    assert_eq!(seen.mailbox, Mailbox::Bounded(16));
    let handler = seen.handling.as_ref().unwrap();
    assert!(handler.elapsed >= Duration::from_millis(30), "{handler:?}");
    let table = render_table_with(
        &snapshot,
        &TableOptions::default().slow_handler(Duration::from_millis(20)),
    );
    let row = table
        .lines()
        .find(|line| line.starts_with(&gate.id().to_string()))
        .unwrap();
    assert!(
        row.contains("5/16") && row.contains("Hold") && row.contains("slow"),
        "{row}"
    );

    release.send(()).unwrap();
    within("the ping", gate.ask(Ping)).await.unwrap();
    eventually("the gate to go idle", || {
        let snapshot = monitor.snapshot(Duration::from_secs(60));
        snapshot.actor(gate.id()).unwrap().handling.is_none()
    })
    .await;
    let snapshot = monitor.snapshot(Duration::from_secs(60));
    let seen = snapshot.actor(gate.id()).unwrap();
    assert_eq!(seen.depth, 0);
    assert_eq!(seen.handled, 7);
    let counts: Vec<(&str, u64)> = seen
        .message_types
        .iter()
        .map(|entry| (entry.message_type.as_str(), entry.count))
        .collect();
    assert_eq!(
        counts,
        vec![
            (std::any::type_name::<Note>(), 5),
            (std::any::type_name::<Hold>(), 1),
            (std::any::type_name::<Ping>(), 1),
        ]
    );
}

/// An unbounded mailbox reports its kind and depth with no capacity.
#[tokio::test]
async fn unbounded_mailbox_reports_depth_without_capacity() {
    let (monitor, proc) = monitored("unbounded");
    let gate = proc.spawn_with("gate", Gate, Mailbox::Unbounded).unwrap();
    let (release, hold) = oneshot::channel();
    gate.tell(Hold(hold)).await.unwrap();
    for _ in 0..3 {
        gate.tell(Note).await.unwrap();
    }
    eventually("3 queued", || {
        monitor
            .snapshot(Duration::from_secs(60))
            .actor(gate.id())
            .is_some_and(|seen| seen.depth == 3 && seen.handling.is_some())
    })
    .await;
    let snapshot = monitor.snapshot(Duration::from_secs(60));
    let seen = snapshot.actor(gate.id()).unwrap();
    assert_eq!(seen.mailbox, Mailbox::Unbounded);
    assert_eq!(seen.mailbox.capacity(), None);
    release.send(()).unwrap();
}
