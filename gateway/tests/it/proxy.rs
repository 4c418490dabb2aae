//! Proxy attach over real TCP: a proc attached through a remote gateway is reached at that
//! gateway's location under its own id.

use plexus_core::{Proc, ProcId};
use plexus_gateway::ProxyError;
use plexus_transport::InprocNetwork;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{Echo, WAIT, any_tcp, ask, networked, ping, spawn_echoer, spawn_recorder};

/// A proc of gateway `home` attaches through gateway `front`; a third gateway reaches it
/// with tells and asks sent to `front`'s location. A second proc with the same id is
/// refused by `front`, and dropping the attachment detaches it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_attached_through_a_proxy_is_reached_at_its_location() {
    let network = InprocNetwork::new();
    let (front, home, client) = (
        networked(&network),
        networked(&network),
        networked(&network),
    );
    let front_server = front.serve(any_tcp()).await.unwrap();
    let via = front_server.location().clone();

    let proc = Proc::new(ProcId::unique("roaming"));
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let recorder = spawn_recorder(&proc, "roaming", seen_tx);
    let echo = spawn_echoer(&proc);
    let attachment = home.attach_through(&proc, via.clone()).await.unwrap();
    assert!(attachment.is_connected());
    assert!(front.is_attached(proc.id()));
    assert!(home.is_attached(proc.id()));

    for n in 0..100 {
        client.post_to(&via, ping(recorder.clone(), n)).unwrap();
    }
    for expected in 0..100 {
        let (_, n) = timeout(WAIT, seen.recv()).await.unwrap().unwrap();
        assert_eq!(n, expected);
    }
    let reply = client
        .request_to(&via, ask(echo.clone(), &Echo(9)), WAIT)
        .await
        .unwrap();
    assert_eq!(postcard::from_bytes::<u64>(&reply).unwrap(), 10);
    assert!(
        front.stats().forwarded >= 101,
        "front relayed {:?}",
        front.stats()
    );

    let twin = Proc::new(proc.id().clone());
    let other_home = networked(&network);
    match other_home.attach_through(&twin, via.clone()).await {
        Err(ProxyError::Refused { .. }) => {}
        other => panic!("expected Refused, got {other:?}"),
    }

    drop(attachment);
    timeout(WAIT, async {
        while front.is_attached(proc.id()) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("front still holds the proc after the attachment was dropped");
}
