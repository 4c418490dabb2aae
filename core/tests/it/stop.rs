//! Stopping: graceful stop drains, immediate stop does not, and both are visible.

use std::sync::{Arc, Mutex};

use plexus_core::{Mailbox, Proc, ProcId, StopReason, TellError};
use tokio::sync::oneshot;

use crate::common::{Hold, Record, Recorder, within};

/// A graceful stop handles everything queued before it, refuses later tells, and then
/// stops with `Stopped`.
#[tokio::test]
async fn graceful_stop_drains_queued_messages() {
    let proc = Proc::new(ProcId::unique("stop"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = proc
        .spawn_with("rec", Recorder { seen: seen.clone() }, Mailbox::Unbounded)
        .unwrap();
    let (release, hold) = oneshot::channel();
    recorder.tell(Hold(hold)).await.unwrap();
    for seq in 0..100 {
        recorder.tell(Record(0, seq)).await.unwrap();
    }
    recorder.stop_gracefully();
    assert_eq!(
        recorder.tell(Record(0, 100)).await,
        Err(TellError::Closed {
            recipient: recorder.id().clone()
        })
    );
    release.send(()).unwrap();
    assert_eq!(
        within("the drain", recorder.wait_for_stop()).await,
        StopReason::Stopped
    );
    assert_eq!(
        recorder.mailbox().unwrap().depth(),
        0,
        "the stop marker must not unbalance the depth"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, &(_, seq))| seq == i as u64)
    );
    assert_eq!(
        proc.undeliverable_count(),
        1,
        "the refused tell must be reported"
    );
}

/// An immediate stop ends the actor after the running handler; the queued tells are not
/// handled but reported as undeliverable, each one.
#[tokio::test]
async fn immediate_stop_reports_queued_tells() {
    let proc = Proc::new(ProcId::unique("stop"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = proc
        .spawn_with("rec", Recorder { seen: seen.clone() }, Mailbox::Unbounded)
        .unwrap();
    let (release, hold) = oneshot::channel();
    recorder.tell(Hold(hold)).await.unwrap();
    for seq in 0..10 {
        recorder.tell(Record(0, seq)).await.unwrap();
    }
    tokio::task::yield_now().await;
    recorder.stop();
    release.send(()).unwrap();
    assert_eq!(
        within("the stop", recorder.wait_for_stop()).await,
        StopReason::Stopped
    );
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(proc.undeliverable_count(), 10);
}
