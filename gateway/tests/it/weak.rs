//! Weak gateway handles.

use plexus_codec::Recipient;
use plexus_core::{ActorId, Location, Proc, ProcId};
use plexus_gateway::{Gateway, PostError};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{WAIT, ping, spawn_recorder};

/// A weak handle posts through a live gateway, and bounces with `BrokenLink` naming the
/// recipient once every strong handle is dropped.
#[tokio::test]
async fn weak_handle_bounces_broken_link_after_gateway_drop() {
    let gateway = Gateway::isolated(Location::Local(0));
    let weak = gateway.downgrade();
    let proc = Proc::new(ProcId::unique("here"));
    let attachment = gateway.attach(&proc).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let recorder = spawn_recorder(&proc, "here", seen_tx);

    weak.post(ping(recorder.clone(), 1)).unwrap();
    assert_eq!(timeout(WAIT, seen.recv()).await.unwrap(), Some(("here", 1)));

    drop(gateway);
    assert!(weak.upgrade().is_none());
    match weak.post(ping(recorder.clone(), 2)) {
        Err(PostError::BrokenLink { recipient }) => {
            assert_eq!(recipient, Recipient::Actor(recorder));
        }
        other => panic!("expected BrokenLink, got {other:?}"),
    }
    let stranger = ActorId::new(ProcId::new("elsewhere", 1), "worker", 0);
    assert!(matches!(
        weak.post(ping(stranger, 3)),
        Err(PostError::BrokenLink { .. })
    ));
    drop(attachment);
}
