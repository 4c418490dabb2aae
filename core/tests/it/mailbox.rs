//! Promise 3.3: bounded mailboxes, `try_tell` fails fast, `tell` waits for room.

use std::time::Duration;

use plexus_core::{DEFAULT_MAILBOX_CAPACITY, Mailbox, Proc, ProcId, TryTellError};
use tokio::sync::oneshot;

use crate::common::{Count, Hold, Record, Recorder, within};

/// `try_tell` on a full mailbox returns `Full` with the message; it succeeds again once the
/// actor makes room.
#[tokio::test]
async fn try_tell_on_full_mailbox_returns_full() {
    let proc = Proc::new(ProcId::unique("mailbox"));
    let recorder = proc
        .spawn_with("rec", Recorder::default(), Mailbox::Bounded(2))
        .unwrap();
    let (release, hold) = oneshot::channel();
    recorder.tell(Hold(hold)).await.unwrap();
    // Wait until the actor has taken `Hold` out and sits in its handler.
    within("the hold to be taken", async {
        while recorder.mailbox().unwrap().depth() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    recorder.try_tell(Record(0, 0)).unwrap();
    recorder.try_tell(Record(0, 1)).unwrap();
    assert_eq!(
        recorder.mailbox().unwrap().depth(),
        2,
        "depth must count messages behind a busy handler"
    );
    match recorder.try_tell(Record(0, 2)) {
        Err(TryTellError::Full { recipient, message }) => {
            assert_eq!(&recipient, recorder.id());
            assert_eq!(message.1, 2);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    release.send(()).unwrap();
    assert_eq!(within("the count", recorder.ask(Count)).await, Ok(2));
    recorder.try_tell(Record(0, 3)).unwrap();
}

/// `tell` on a full mailbox waits, and goes through once the actor makes room.
#[tokio::test]
async fn tell_waits_for_room() {
    let proc = Proc::new(ProcId::unique("mailbox"));
    let recorder = proc
        .spawn_with("rec", Recorder::default(), Mailbox::Bounded(1))
        .unwrap();
    let (release, hold) = oneshot::channel();
    recorder.tell(Hold(hold)).await.unwrap();
    recorder.tell(Record(0, 0)).await.unwrap();
    let waiting = tokio::spawn({
        let recorder = recorder.clone();
        async move { recorder.tell(Record(0, 1)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "tell went past a full mailbox");
    release.send(()).unwrap();
    within("the waiting tell", waiting).await.unwrap().unwrap();
    assert_eq!(within("the count", recorder.ask(Count)).await, Ok(2));
}

/// The default mailbox is bounded at the documented capacity; unbounded is available.
#[tokio::test]
async fn default_mailbox_is_bounded() {
    let proc = Proc::new(ProcId::unique("mailbox"));
    let bounded = proc.spawn("bounded", Recorder::default()).unwrap();
    assert_eq!(
        bounded.mailbox().unwrap().capacity(),
        Some(DEFAULT_MAILBOX_CAPACITY)
    );
    let unbounded = proc
        .spawn_with("unbounded", Recorder::default(), Mailbox::Unbounded)
        .unwrap();
    assert_eq!(unbounded.mailbox().unwrap().capacity(), None);
}
