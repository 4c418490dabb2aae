//! The monitor service: a snapshot request delivered as an ordinary remote message is
//! answered with the monitor's snapshot, encoded as it would cross a gateway.

use std::time::Duration;

use plexus_core::{DeliveryError, Proc, RemoteAskError, RemoteMessage, SpawnError};
use plexus_monitor::{MONITOR_ACTOR_NAME, Monitor, ServeError, Snapshot, SnapshotRequest};
use tokio::sync::oneshot;

use crate::common::{Gate, Hold, Note, eventually, monitored, within};

/// Delivers `payload` to the proc's monitor service as a remote ask, as a connection
/// reader would, and returns what the reply callback received.
async fn remote_ask(
    proc: &Proc,
    message: &str,
    payload: &[u8],
) -> (Result<(), DeliveryError>, Result<Vec<u8>, RemoteAskError>) {
    let (reply, answer) = oneshot::channel();
    let delivered = proc.deliver_remote(
        MONITOR_ACTOR_NAME,
        message,
        payload,
        Some(Box::new(move |outcome| {
            let _ = reply.send(outcome);
        })),
    );
    let outcome = within("the reply callback", answer)
        .await
        .expect("the reply callback was dropped without being called");
    (delivered, outcome)
}

async fn request_snapshot(proc: &Proc, grave_window: Duration) -> Snapshot {
    let payload = postcard::to_allocvec(&SnapshotRequest::new(grave_window)).unwrap();
    let (delivered, outcome) = remote_ask(proc, SnapshotRequest::NAME, &payload).await;
    delivered.unwrap();
    postcard::from_bytes(&outcome.unwrap()).unwrap()
}

/// A snapshot request delivered by name reaches the service, and the decoded reply shows
/// the proc's actors with their live figures, the service among them.
#[tokio::test]
async fn snapshot_request_is_answered_by_remote_delivery() {
    let (monitor, proc) = monitored("served");
    let service = monitor.serve_on(&proc).unwrap();
    assert_eq!(service.id().name(), MONITOR_ACTOR_NAME);
    let gate = proc.spawn("gate", Gate).unwrap();
    let (release, hold) = oneshot::channel();
    gate.tell(Hold(hold)).await.unwrap();
    gate.tell(Note).await.unwrap();
    gate.tell(Note).await.unwrap();
    eventually("the gate to hold", || {
        monitor
            .actor(gate.id())
            .is_some_and(|actor| actor.handled() == 1)
    })
    .await;

    let snapshot = request_snapshot(&proc, Duration::from_secs(10)).await;
    let seen = snapshot
        .actor(gate.id())
        .expect("the gate is in the snapshot");
    assert_eq!((seen.handled, seen.depth), (1, 2));
    assert!(
        seen.handling.is_some(),
        "the gate's running handler is missing"
    );
    let server = snapshot
        .actor(service.id())
        .expect("the service is in its own snapshot");
    assert_eq!(
        server.handled, 1,
        "the service counts the request it answers"
    );
    assert_eq!(snapshot.totals.alive, 2);
    let _ = release.send(());
}

/// The grave window travels with the request: a stopped actor is listed under a long
/// window and reaped under a zero one.
#[tokio::test]
async fn the_request_carries_the_grave_window() {
    let (monitor, proc) = monitored("graves");
    monitor.serve_on(&proc).unwrap();
    let gate = proc.spawn("gate", Gate).unwrap();
    gate.stop();
    within("the gate to stop", gate.wait_for_stop()).await;

    let kept = request_snapshot(&proc, Duration::from_secs(60)).await;
    assert!(
        kept.actor(gate.id()).is_some(),
        "the stopped gate was reaped early"
    );
    let reaped = request_snapshot(&proc, Duration::ZERO).await;
    assert!(
        reaped.actor(gate.id()).is_none(),
        "the stopped gate outlived a zero window"
    );
    assert_eq!(reaped.totals.stopped, 1);
}

/// A payload that is not a snapshot request is refused, and the asker hears why.
#[tokio::test]
async fn a_bad_request_is_answered_with_an_error() {
    let (monitor, proc) = monitored("bad");
    monitor.serve_on(&proc).unwrap();
    let (delivered, outcome) = remote_ask(&proc, SnapshotRequest::NAME, &[0xff; 11]).await;
    assert!(
        matches!(delivered, Err(DeliveryError::Decode { .. })),
        "{delivered:?}"
    );
    assert!(
        matches!(outcome, Err(RemoteAskError::Decode { .. })),
        "{outcome:?}"
    );
    let (delivered, outcome) = remote_ask(&proc, "plexus.monitor.Reset", &[]).await;
    assert!(matches!(
        delivered,
        Err(DeliveryError::UnknownMessage { .. })
    ));
    assert!(matches!(
        outcome,
        Err(RemoteAskError::UnknownMessage { .. })
    ));
}

/// A proc is served once: a second service under the well-known name is refused.
#[tokio::test]
async fn a_proc_is_served_once() {
    let (monitor, proc) = monitored("twice");
    monitor.serve_on(&proc).unwrap();
    let again = Monitor::new().serve_on(&proc);
    assert!(
        matches!(again, Err(ServeError::Spawn(SpawnError::NameTaken { .. }))),
        "{again:?}"
    );
    // The first service still answers.
    let snapshot = request_snapshot(&proc, Duration::from_secs(10)).await;
    assert_eq!(snapshot.totals.alive, 1);
}
