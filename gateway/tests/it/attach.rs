//! Attachment rules: one live proc per id, dead entries replaced and cleaned.

use plexus_core::{Location, Proc, ProcId};
use plexus_gateway::{AttachError, Gateway, PostError};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{CountingForwarder, WAIT, elsewhere, ping, spawn_recorder};

/// A second live proc with the same id is refused; once the first proc's attachment is
/// dropped, a proc with that id attaches again and receives the envelopes.
#[tokio::test]
async fn same_id_is_refused_while_live_and_accepted_after_detach() {
    let gateway = Gateway::isolated(Location::Local(0));
    let id = ProcId::new("twin", 1);
    let first = Proc::new(id.clone());
    let second = Proc::new(id.clone());

    let attachment = gateway.attach(&first).unwrap();
    assert_eq!(attachment.proc_id(), &id);
    assert_eq!(
        gateway.attach(&second).unwrap_err(),
        AttachError::AlreadyAttached { proc: id.clone() }
    );

    drop(attachment);
    assert!(!gateway.is_attached(&id));
    let _attachment = gateway.attach(&second).unwrap();
    assert!(gateway.is_attached(&id));

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let recorder = spawn_recorder(&second, "second", seen_tx);
    gateway.post(ping(recorder, 5)).unwrap();
    assert_eq!(
        timeout(WAIT, seen.recv()).await.unwrap(),
        Some(("second", 5))
    );
}

/// After a proc is detached, envelopes for it are treated like those for any unknown
/// proc: forwarded, never delivered to the detached proc.
#[tokio::test]
async fn detached_proc_is_routed_like_an_unknown_one() {
    let forwarder = CountingForwarder::new();
    let gateway = Gateway::with_forwarder(Location::Local(0), forwarder.clone());
    let proc = Proc::new(ProcId::unique("gone"));
    let attachment = gateway.attach(&proc).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let recorder = spawn_recorder(&proc, "gone", seen_tx);

    attachment.detach();
    gateway
        .post_to(&elsewhere(), ping(recorder.clone(), 1))
        .unwrap();
    assert_eq!(forwarder.count(), 1);
    assert!(
        timeout(std::time::Duration::from_millis(200), seen.recv())
            .await
            .is_err()
    );

    let isolated = Gateway::isolated(Location::Local(1));
    isolated.attach(&proc).unwrap().detach();
    assert!(matches!(
        isolated.post_to(&elsewhere(), ping(recorder, 2)),
        Err(PostError::Unroutable { .. })
    ));
}
