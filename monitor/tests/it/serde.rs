//! Snapshots as data: they round-trip through serde, and merged ones too.

use std::time::Duration;

use plexus_monitor::{Snapshot, WaitForGraph};
use tokio::sync::oneshot;

use crate::common::{Gate, Hold, Note, eventually, monitored, within};

/// A snapshot with running handlers, queued messages, stopped actors and a pending ask
/// decodes to the same value, and so does a merge of two.
#[tokio::test]
async fn snapshot_round_trips_through_postcard() {
    let (monitor, proc) = monitored("serde");
    let busy = proc.spawn("busy", Gate).unwrap();
    let (release, hold) = oneshot::channel();
    busy.tell(Hold(hold)).await.unwrap();
    busy.tell(Note).await.unwrap();
    let gone = proc.spawn("gone", Gate).unwrap();
    gone.stop();
    within("the stop", gone.wait_for_stop()).await;
    eventually("the held handler", || {
        monitor
            .snapshot(Duration::from_secs(60))
            .actor(busy.id())
            .is_some_and(|seen| seen.handling.is_some())
    })
    .await;

    let snapshot = monitor.snapshot(Duration::from_secs(60));
    assert_eq!(snapshot.actors.len(), 2);
    let bytes = postcard::to_allocvec(&snapshot).unwrap();
    let decoded: Snapshot = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, snapshot);

    let (other_monitor, other_proc) = monitored("serde-other");
    let _idle = other_proc.spawn("idle", Gate).unwrap();
    let merged = Snapshot::merge([snapshot, other_monitor.snapshot(Duration::from_secs(60))]);
    assert_eq!(merged.actors.len(), 3);
    assert_eq!(merged.totals.spawned, 3);
    assert_eq!(merged.totals.alive, 2);
    let bytes = postcard::to_allocvec(&merged).unwrap();
    let decoded: Snapshot = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, merged);
    assert!(WaitForGraph::from_snapshot(&decoded).is_empty());

    // Garbage is an error, not a panic.
    assert!(postcard::from_bytes::<Snapshot>(&bytes[..bytes.len() / 2]).is_err());
    release.send(()).unwrap();
}
