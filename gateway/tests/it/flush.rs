//! The flush contract: when `flush` returns, everything posted before has been delivered,
//! handed to a wire, or bounced.

use plexus_core::{Location, Mailbox, Proc, ProcId};
use plexus_gateway::Gateway;
use plexus_transport::InprocNetwork;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{WAIT, networked, ping, spawn_recorder};

/// Tells that found a small mailbox full wait in the gateway; `flush` returns only once
/// all of them are in the mailbox, so at most a mailbox's worth is still unhandled.
#[tokio::test]
async fn flush_returns_after_parked_tells_reach_the_mailbox() {
    const CAPACITY: usize = 4;
    const COUNT: u64 = 1_000;
    let gateway = Gateway::isolated(Location::Local(0));
    let proc = Proc::builder(ProcId::unique("narrow"))
        .default_mailbox(Mailbox::Bounded(CAPACITY))
        .build();
    let _attached = gateway.attach(&proc).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let recorder = spawn_recorder(&proc, "narrow", seen_tx);

    // No await in this loop: on this single-threaded runtime the recorder cannot run, so
    // all but the first few tells find the mailbox full and are parked.
    for n in 0..COUNT {
        gateway.post(ping(recorder.clone(), n)).unwrap();
    }
    timeout(WAIT, gateway.flush()).await.expect("flush hung");

    let mut handled = Vec::new();
    while let Ok((_, n)) = seen.try_recv() {
        handled.push(n);
    }
    assert!(
        handled.len() as u64 >= COUNT - CAPACITY as u64,
        "flush returned with only {} of {COUNT} tells handled",
        handled.len()
    );
    while handled.len() < COUNT as usize {
        handled.push(timeout(WAIT, seen.recv()).await.unwrap().unwrap().1);
    }
    assert_eq!(
        handled,
        (0..COUNT).collect::<Vec<_>>(),
        "parked tells kept their order"
    );
}

/// Tells to a destination nobody listens on are bounced by the time `flush` returns.
#[tokio::test]
async fn flush_returns_after_unreachable_tells_are_bounced() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed: Location = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let gateway = networked(&InprocNetwork::new());
    let stranger = plexus_core::ActorId::new(ProcId::new("nobody", 1), "recorder", 0);

    for n in 0..5 {
        gateway.post_to(&closed, ping(stranger.clone(), n)).unwrap();
    }
    timeout(WAIT, gateway.flush()).await.expect("flush hung");
    assert_eq!(gateway.stats().bounced, 5);
}
