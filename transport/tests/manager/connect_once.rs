//! First sends to a destination: one dial however many senders, a shared outcome, and a
//! retry after the backoff.

use std::time::{Duration, Instant};

use plexus_core::Location;
use plexus_transport::{ConnectError, Dest, DialError, InprocNetwork, TransportError, WireError};

use crate::{Peer, Requests, TestBuilder, config, manager, tell};

/// 1,000 concurrent first sends to one destination make the wire builder dial exactly
/// once, and every one of them is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_first_sends_dial_once_and_all_arrive() {
    let network = InprocNetwork::new();
    let mut peer = Peer::serve(network.bind(1).unwrap(), Requests::Answer);
    let builder = TestBuilder::counting(network, Duration::from_millis(50));
    let manager = std::sync::Arc::new(manager(builder.clone(), config(2_000, 60_000)));
    let dest = Dest::new(Location::Local(1));

    let sends: Vec<_> = (0..1_000)
        .map(|n| {
            let (manager, dest) = (manager.clone(), dest.clone());
            tokio::spawn(async move { manager.send(&dest, tell(n, 0, n)).await })
        })
        .collect();
    for send in sends {
        crate::within(Duration::from_secs(10), "a first send", send)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        builder.calls(),
        1,
        "the builder was not called exactly once"
    );
    let mut seen = vec![false; 1_000];
    for _ in 0..1_000 {
        let (connection, envelope) = peer.next().await;
        assert_eq!(connection, 0);
        seen[crate::pair_and_seq(&envelope).2 as usize] = true;
    }
    assert!(seen.iter().all(|&s| s), "some sends never arrived");
    assert_eq!(peer.accepted(), 1);
}

/// With a builder that fails, all 1,000 concurrent first sends get the one dial's error
/// within a bounded time; a send during the backoff fails at once without dialing, and a
/// send after the backoff dials again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_first_sends_share_a_failure_and_retry_after_backoff() {
    let builder = TestBuilder::failing(Duration::from_millis(100));
    let manager = std::sync::Arc::new(manager(builder.clone(), config(2_000, 60_000)));
    let dest = Dest::new(Location::Local(9));

    let started = Instant::now();
    let sends: Vec<_> = (0..1_000)
        .map(|n| {
            let (manager, dest) = (manager.clone(), dest.clone());
            tokio::spawn(async move { manager.send(&dest, tell(n, 0, n)).await })
        })
        .collect();
    for send in sends {
        let outcome = crate::within(Duration::from_secs(5), "a failing first send", send)
            .await
            .unwrap();
        let Err(TransportError::Connect(ConnectError::Failed {
            dest: failed,
            source,
        })) = outcome
        else {
            panic!("expected the dial's failure, got {outcome:?}");
        };
        assert_eq!(failed, dest);
        assert!(
            matches!(*source, DialError::Wire(WireError::Refused { .. })),
            "{source:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        builder.calls(),
        1,
        "the failing builder was not called exactly once"
    );
    assert!(
        !manager.has_dest(&dest),
        "a failed dial left the destination behind"
    );

    let during = manager.send(&dest, tell(0, 0, 0)).await;
    assert!(
        matches!(
            during,
            Err(TransportError::Connect(ConnectError::Backoff { .. }))
        ),
        "{during:?}"
    );
    assert_eq!(builder.calls(), 1, "a send during the backoff dialed");

    tokio::time::sleep(Duration::from_millis(150)).await;
    let after = manager.send(&dest, tell(0, 0, 0)).await;
    assert!(
        matches!(
            after,
            Err(TransportError::Connect(ConnectError::Failed { .. }))
        ),
        "{after:?}"
    );
    assert_eq!(
        builder.calls(),
        2,
        "a send after the backoff did not dial again"
    );
}

/// Closing a destination while its first dial is under way cancels the dial: the waiting
/// send fails with `Cancelled` at once, the destination does not stay listed, and the
/// next send dials again and succeeds.
#[tokio::test]
async fn closing_a_destination_mid_dial_cancels_it_and_the_next_send_dials_again() {
    let network = InprocNetwork::new();
    let mut peer = Peer::serve(network.bind(1).unwrap(), Requests::Answer);
    let builder = TestBuilder::counting(network, Duration::from_secs(30));
    let manager = std::sync::Arc::new(manager(builder.clone(), config(60_000, 60_000)));
    let dest = Dest::new(Location::Local(1));

    let first = {
        let (manager, dest) = (manager.clone(), dest.clone());
        tokio::spawn(async move { manager.send(&dest, tell(0, 0, 0)).await })
    };
    crate::eventually(Duration::from_secs(5), "the dial under way", || {
        builder.calls() == 1
    })
    .await;
    assert_eq!(manager.list_dests(), vec![dest.clone()]);
    assert!(manager.close_transport(&dest));
    let outcome = crate::within(Duration::from_secs(2), "the cancelled send", first)
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            Err(TransportError::Connect(ConnectError::Cancelled { .. }))
        ),
        "{outcome:?}"
    );
    assert!(
        !manager.has_dest(&dest),
        "the cancelled dial left the destination listed"
    );

    crate::within(
        Duration::from_secs(5),
        "the next send",
        manager.send(&dest, tell(0, 0, 1)),
    )
    .await
    .unwrap();
    assert_eq!(builder.calls(), 2, "the next send did not dial again");
    let (_, envelope) = peer.next().await;
    assert_eq!(crate::pair_and_seq(&envelope).2, 1);
}
