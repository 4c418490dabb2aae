//! Promise 3.5: tells that cannot be delivered reach the proc's undeliverable handler.

use std::sync::{Arc, Mutex};

use plexus_core::{
    Mailbox, Proc, ProcId, StopReason, TellError, TryTellError, Undeliverable, UndeliverableReason,
};
use tokio::sync::oneshot;

use crate::common::{Hold, Record, Recorder, within};

fn collecting_proc() -> (Proc, Arc<Mutex<Vec<Undeliverable>>>) {
    let lost = Arc::new(Mutex::new(Vec::new()));
    let proc = Proc::builder(ProcId::unique("undeliverable"))
        .on_undeliverable({
            let lost = lost.clone();
            move |undeliverable| lost.lock().unwrap().push(undeliverable)
        })
        .build();
    (proc, lost)
}

/// A tell to a stopped actor fails with `Closed` and the message itself reaches the
/// handler with the recipient and the reason.
#[tokio::test]
async fn tell_to_stopped_actor_reaches_handler() {
    let (proc, lost) = collecting_proc();
    let recorder = proc.spawn("rec", Recorder::default()).unwrap();
    recorder.stop();
    within("the stop", recorder.wait_for_stop()).await;

    assert_eq!(
        recorder.tell(Record(7, 42)).await,
        Err(TellError::Closed {
            recipient: recorder.id().clone()
        })
    );
    assert!(matches!(
        recorder.try_tell(Record(7, 43)),
        Err(TryTellError::Closed { .. })
    ));
    assert_eq!(
        recorder.send_unbounded(Record(7, 44)),
        Err(TellError::Closed {
            recipient: recorder.id().clone()
        })
    );

    let lost = lost.lock().unwrap();
    assert_eq!(lost.len(), 3);
    for (undeliverable, expected_seq) in lost.iter().zip(42..) {
        assert_eq!(&undeliverable.recipient, recorder.id());
        assert_eq!(undeliverable.reason, UndeliverableReason::RecipientStopped);
        assert!(undeliverable.message_type.ends_with("Record"));
        let record = undeliverable
            .message
            .downcast_ref::<Record>()
            .expect("the message is a Record");
        assert_eq!((record.0, record.1), (7, expected_seq));
    }
    assert_eq!(proc.undeliverable_count(), 3);
}

/// Tells queued when the actor stopped reach the handler with the stop reason.
#[tokio::test]
async fn queued_tells_reach_handler_with_stop_reason() {
    let (proc, lost) = collecting_proc();
    let recorder = proc
        .spawn_with("rec", Recorder::default(), Mailbox::Bounded(8))
        .unwrap();
    let (release, hold) = oneshot::channel();
    recorder.tell(Hold(hold)).await.unwrap();
    recorder.tell(Record(1, 1)).await.unwrap();
    tokio::task::yield_now().await;
    recorder.stop();
    drop(release);
    within("the stop", recorder.wait_for_stop()).await;
    let lost = lost.lock().unwrap();
    assert_eq!(lost.len(), 1);
    assert_eq!(
        lost[0].reason,
        UndeliverableReason::StoppedBeforeHandling(StopReason::Stopped)
    );
}
