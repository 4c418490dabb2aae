//! Simultaneous dials: two procs that dial each other keep one connection, chosen by
//! `prefer_connection` the same way on both ends, and lose no tell on the way.

use std::sync::Arc;
use std::time::Duration;

use plexus_codec::NetworkEnvelope;
use plexus_core::{Location, ProcId};
use plexus_transport::{
    Adoption, Dest, Hello, OutprocTransportManager, TcpConfig, TcpWireBuilder, TcpWireListener,
    WireListener,
};
use tokio::sync::mpsc;

use crate::{config, eventually, pair_and_seq, tell, within};

/// A manager of proc `label` (launch 1) advertising its own TCP listener, accepting every
/// wire into itself; returns its destination and what reaches its inbound handler.
async fn proc_manager(
    label: &str,
) -> (
    Arc<OutprocTransportManager>,
    Dest,
    mpsc::UnboundedReceiver<NetworkEnvelope>,
    mpsc::UnboundedReceiver<Adoption>,
) {
    let mut listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let location: Location = listener.location().clone();
    let (tx, received) = mpsc::unbounded_channel();
    let manager = Arc::new(
        OutprocTransportManager::new(
            TcpWireBuilder::new(TcpConfig::default()),
            Hello::new(ProcId::new(label, 1), 1).with_location(location.clone()),
            config(2_000, 60_000),
            move |envelope| {
                let _ = tx.send(envelope);
            },
        )
        .unwrap(),
    );
    let (adopted_tx, adoptions) = mpsc::unbounded_channel();
    let acceptor = Arc::downgrade(&manager);
    tokio::spawn(async move {
        while let Ok(wire) = listener.accept().await {
            let Some(manager) = acceptor.upgrade() else {
                return;
            };
            let adopted_tx = adopted_tx.clone();
            tokio::spawn(async move {
                if let Ok(adoption) = manager.accept(wire).await {
                    let _ = adopted_tx.send(adoption);
                }
            });
        }
    });
    (manager, Dest::new(location), received, adoptions)
}

/// Procs `a` and `b` dial each other at the same moment, each sending 100 tells: both
/// end with one healthy transport over the same connection (one side holds it as
/// dialed, the other as adopted; when both dialed, the one `a`, the smaller identity,
/// dialed), every tell arrives exactly once, and later tells go over that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_settle_on_one_connection() {
    let (a, a_dest, mut at_a, mut a_adoptions) = proc_manager("a").await;
    let (b, b_dest, mut at_b, mut b_adoptions) = proc_manager("b").await;

    let send_all = |from: Arc<OutprocTransportManager>, to: Dest| {
        tokio::spawn(async move {
            for n in 0..100 {
                from.send(&to, tell(1, 2, n)).await.unwrap();
            }
        })
    };
    let (sent_a, sent_b) = (
        send_all(a.clone(), b_dest.clone()),
        send_all(b.clone(), a_dest.clone()),
    );
    within(Duration::from_secs(5), "both senders", async {
        sent_a.await.unwrap();
        sent_b.await.unwrap();
    })
    .await;

    // Tells in flight on the retired connection when the two swap may overtake, or be
    // overtaken by, the first ones on the kept connection (see `adopt`); none is lost.
    for received in [&mut at_a, &mut at_b] {
        within(Duration::from_secs(5), "every tell", async {
            let mut seen = std::collections::BTreeSet::new();
            while seen.len() < 100 {
                let envelope = received.recv().await.unwrap();
                let (sender, recipient, n) = pair_and_seq(&envelope);
                assert_eq!((sender, recipient), (1, 2));
                assert!(seen.insert(n), "tell {n} arrived twice");
            }
        })
        .await;
    }
    // One side holds the kept connection as dialed, the other as adopted; which one
    // dialed at all depends on the race, and when both did, the rule keeps the one `a`
    // (the smaller identity) dialed.
    eventually(Duration::from_secs(5), "one transport on each side", || {
        let (Some(to_b), Some(to_a)) = (a.transport(&b_dest), b.transport(&a_dest)) else {
            return false;
        };
        to_b.is_healthy() && to_a.is_healthy() && to_b.is_dialed() != to_a.is_dialed()
    })
    .await;
    let a_holds_dialed = a.transport(&b_dest).unwrap().is_dialed();
    let (adopter, retirer) = if a_holds_dialed {
        (&mut b_adoptions, &mut a_adoptions)
    } else {
        (&mut a_adoptions, &mut b_adoptions)
    };
    let adopted = within(Duration::from_secs(5), "the adoption", adopter.recv())
        .await
        .unwrap();
    assert!(matches!(adopted, Adoption::Adopted { .. }), "{adopted:?}");
    if let Ok(retired) = retirer.try_recv() {
        // Both dialed: the dialer's side retired the other connection, and only `a`'s
        // dial can have been kept.
        assert!(a_holds_dialed);
        assert!(matches!(retired, Adoption::Retired { .. }), "{retired:?}");
        within(
            Duration::from_secs(5),
            "the retired connection closing",
            retired.connection().closed(),
        )
        .await;
    }

    // Both directions now use the kept connection.
    a.send(&b_dest, tell(3, 4, 0)).await.unwrap();
    b.send(&a_dest, tell(3, 4, 0)).await.unwrap();
    let at_b_next = within(Duration::from_secs(5), "a tell at b", at_b.recv())
        .await
        .unwrap();
    let at_a_next = within(Duration::from_secs(5), "a tell at a", at_a.recv())
        .await
        .unwrap();
    assert_eq!(pair_and_seq(&at_b_next), (3, 4, 0));
    assert_eq!(pair_and_seq(&at_a_next), (3, 4, 0));

    assert_eq!(a.dest_count(), 1);
    assert_eq!(b.dest_count(), 1);
}

/// A peer that dials first, before this side ever dialed it, becomes this side's
/// transport to it: the first send to the peer dials nothing and goes back over the
/// connection the peer opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_peer_dialed_serves_sends_to_it() {
    let (a, a_dest, mut at_a, _a_adoptions) = proc_manager("a").await;
    let (b, b_dest, mut at_b, mut b_adoptions) = proc_manager("b").await;
    a.send(&b_dest, tell(1, 1, 0)).await.unwrap();
    let adoption = within(Duration::from_secs(5), "b's adoption", b_adoptions.recv())
        .await
        .unwrap();
    assert!(matches!(&adoption, Adoption::Adopted { dest, .. } if *dest == a_dest));
    within(Duration::from_secs(5), "the tell at b", at_b.recv())
        .await
        .unwrap();

    let before = adoption.connection().stats().envelopes_sent;
    b.send(&a_dest, tell(2, 2, 0)).await.unwrap();
    let back = within(Duration::from_secs(5), "the tell at a", at_a.recv())
        .await
        .unwrap();
    assert_eq!(pair_and_seq(&back), (2, 2, 0));
    assert!(!b.transport(&a_dest).unwrap().is_dialed());
    assert!(
        adoption.connection().stats().envelopes_sent > before,
        "the tell went over the adopted connection"
    );
    assert_eq!(b.dest_count(), 1);
}

/// A manager built with flow control accepts a dialed connection and runs its flow
/// receiver over the target: tells reach the target, the dialer spends and regains
/// credit, and a tell to a recipient the target does not know closes its flow, so the
/// dialer's later sends to it fail with `TransportError::Flow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepting_manager_runs_flow_control_over_its_target() {
    use plexus_codec::Recipient;
    use plexus_transport::{FlowConfig, FlowError, FlowTarget, Refused, Room, TransportError};

    /// Takes tells for recipient index 2 only.
    struct Only2(mpsc::UnboundedSender<NetworkEnvelope>);

    impl FlowTarget for Only2 {
        fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
            match &envelope.recipient {
                Recipient::Actor(actor) if actor.index() == 2 => {
                    let _ = self.0.send(envelope);
                    Ok(())
                }
                _ => Err(Refused::Gone(envelope)),
            }
        }

        async fn wait_for_room(&self, _recipient: &Recipient) -> Room {
            Room::Available
        }
    }

    let mut listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let location = listener.location().clone();
    let (tx, mut delivered) = mpsc::unbounded_channel();
    let window = FlowConfig {
        window_messages: 8,
        ..FlowConfig::default()
    };
    let server = Arc::new(
        OutprocTransportManager::with_flow_control(
            TcpWireBuilder::new(TcpConfig::default()),
            Hello::new(ProcId::new("server", 1), 1).with_location(location.clone()),
            config(2_000, 60_000),
            |_: NetworkEnvelope| {},
            window,
            Arc::new(Only2(tx)),
        )
        .unwrap(),
    );
    let acceptor = server.clone();
    tokio::spawn(async move {
        while let Ok(wire) = listener.accept().await {
            let _ = acceptor.accept(wire).await;
        }
    });
    let client = OutprocTransportManager::new(
        TcpWireBuilder::new(TcpConfig::default()),
        Hello::new(ProcId::new("client", 1), 1),
        config(2_000, 60_000),
        |_: NetworkEnvelope| {},
    )
    .unwrap();
    let dest = Dest::new(location);

    // Far more than the window of 8: credit must come back for these to pass.
    for n in 0..200 {
        client.send(&dest, tell(1, 2, n)).await.unwrap();
    }
    for n in 0..200 {
        let envelope = within(
            Duration::from_secs(5),
            "a tell at the target",
            delivered.recv(),
        )
        .await
        .unwrap();
        assert_eq!(pair_and_seq(&envelope), (1, 2, n));
    }

    client.send(&dest, tell(1, 3, 0)).await.unwrap();
    let refused = within(Duration::from_secs(5), "the flow to 3 closing", async {
        loop {
            match client.send(&dest, tell(1, 3, 1)).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(error) => return error,
            }
        }
    })
    .await;
    assert!(
        matches!(
            refused,
            TransportError::Flow {
                source: FlowError::Closed { .. },
                ..
            }
        ),
        "{refused:?}"
    );
    // The flow to 2 is unaffected.
    client.send(&dest, tell(1, 2, 200)).await.unwrap();
}
