//! The destination table: listing, closing one destination and closing all.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use plexus_core::Location;
use plexus_transport::{Dest, InprocListener, InprocNetwork, Wire, WireError, WireListener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{Peer, Requests, config, manager, tell, within};

/// `list_dests`, `has_dest` and `dest_count` report the connected destinations;
/// `close_transport` closes one (its peer sees the connection end) and reports whether it
/// had one; `close_all` closes the rest; a send afterwards dials again.
#[tokio::test]
async fn close_transport_close_all_and_listing_behave() {
    let network = InprocNetwork::new();
    let mut one = Peer::serve(network.bind(1).unwrap(), Requests::Answer);
    let mut two = Peer::serve(network.bind(2).unwrap(), Requests::Answer);
    let manager = manager(network, config(2_000, 60_000));
    let (d1, d2) = (Dest::new(Location::Local(1)), Dest::new(Location::Local(2)));
    assert_eq!(manager.dest_count(), 0);
    assert!(manager.list_dests().is_empty());

    manager.send(&d1, tell(0, 0, 0)).await.unwrap();
    manager.send(&d2, tell(0, 0, 0)).await.unwrap();
    one.next().await;
    two.next().await;
    let mut listed = manager.list_dests();
    listed.sort();
    assert_eq!(listed, vec![d1.clone(), d2.clone()]);
    assert!(manager.has_dest(&d1) && manager.has_dest(&d2));
    assert!(!manager.has_dest(&Dest::new(Location::Local(3))));
    assert_eq!(manager.dest_count(), 2);

    assert!(manager.close_transport(&d1));
    assert!(
        !manager.close_transport(&d1),
        "closing twice found a transport"
    );
    within(
        Duration::from_secs(5),
        "peer one seeing the close",
        one.connection(0).closed(),
    )
    .await;
    assert_eq!(manager.list_dests(), vec![d2.clone()]);
    assert!(!manager.has_dest(&d1));
    assert_eq!(manager.dest_count(), 1);
    assert!(
        two.connection(0).close_reason().is_none(),
        "closing one closed the other"
    );

    manager.close_all();
    within(
        Duration::from_secs(5),
        "peer two seeing the close",
        two.connection(0).closed(),
    )
    .await;
    assert_eq!(manager.dest_count(), 0);
    assert!(manager.list_dests().is_empty());

    manager.send(&d1, tell(0, 0, 1)).await.unwrap();
    let (connection, _) = one.next().await;
    assert_eq!(
        connection, 1,
        "the send after close_transport did not dial a new connection"
    );
    assert_eq!(manager.dest_count(), 1);
}

/// Dropping the manager closes the connections of its destinations: the peer sees each
/// one end, so nothing is left running (the health checker and the wire watchers hold
/// no strong reference that would keep them open).
#[tokio::test]
async fn dropping_the_manager_closes_its_connections() {
    let network = InprocNetwork::new();
    let mut peer = Peer::serve(network.bind(1).unwrap(), Requests::Answer);
    let manager = manager(network, config(2_000, 50));
    let dest = Dest::new(Location::Local(1));
    manager.send(&dest, tell(0, 0, 0)).await.unwrap();
    peer.next().await;

    drop(manager);
    within(
        Duration::from_secs(5),
        "the peer seeing the connection end",
        peer.connection(0).closed(),
    )
    .await;
}

/// `close_transport` over TCP right after 5,000 sends were queued loses none of them
/// and keeps their order across the close (design 3, promise 1): the closed connection
/// writes out its queue, the sends after the close go on a new connection that is only
/// dialed once the old one has ended, so the peer sees all 10,000 exactly once and in
/// the order sent, the old connection's before the new one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_transport_writes_out_its_queue() {
    use plexus_transport::{TcpConfig, TcpWireBuilder, TcpWireListener};

    let listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dest = Dest::new(listener.location().clone());
    let mut peer = Peer::serve(listener, Requests::Answer);
    // The drain of the closed connection is cut off after half the connect timeout; a
    // loaded 2-core machine can take over a second to write 5,000 envelopes, so the
    // bound here is generous: the test checks that nothing is lost, not how fast.
    let manager = manager(
        TcpWireBuilder::new(TcpConfig::default()),
        config(30_000, 60_000),
    );
    const EACH: u64 = 5_000;
    for seq in 0..EACH {
        manager.send(&dest, tell(0, 0, seq)).await.unwrap();
    }
    assert!(manager.close_transport(&dest));
    for seq in EACH..2 * EACH {
        manager.send(&dest, tell(0, 0, seq)).await.unwrap();
    }
    for expected in 0..2 * EACH {
        let (connection, envelope) =
            within(Duration::from_secs(10), "the next envelope", peer.next()).await;
        let seq = crate::pair_and_seq(&envelope).2;
        assert_eq!(
            seq, expected,
            "out of order (seq {seq} on connection {connection})"
        );
        let on = usize::from(seq >= EACH);
        assert_eq!(connection, on, "{seq} came on connection {connection}");
    }
}

/// Pauses the reads of the wires it wraps while its flag is set, so a test can hold a
/// closed connection in its drain: the peer reads neither the rest of its queue nor its
/// end of stream, so it cannot end.
#[derive(Clone, Default)]
struct ReadGate {
    state: Arc<Mutex<(bool, Vec<Waker>)>>,
}

impl ReadGate {
    fn pause(&self) {
        self.state.lock().unwrap().0 = true;
    }

    fn resume(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = false;
        state.1.drain(..).for_each(Waker::wake);
    }
}

/// A wire whose reads wait while its [`ReadGate`] is paused.
struct GatedIo {
    wire: Wire,
    gate: ReadGate,
}

impl AsyncRead for GatedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        {
            let mut state = self.gate.state.lock().unwrap();
            if state.0 {
                state.1.push(cx.waker().clone());
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.wire).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.wire).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.wire).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.wire).poll_shutdown(cx)
    }
}

/// A listener whose first accepted wire reads through a [`ReadGate`].
struct GatedListener {
    inner: InprocListener,
    gate: Option<ReadGate>,
}

#[async_trait]
impl WireListener for GatedListener {
    fn location(&self) -> &Location {
        self.inner.location()
    }

    async fn accept(&mut self) -> Result<Wire, WireError> {
        let wire = self.inner.accept().await?;
        Ok(match self.gate.take() {
            Some(gate) => {
                let peer = wire.peer().to_owned();
                Wire::new(GatedIo { wire, gate }, peer)
            }
            None => wire,
        })
    }
}

/// A dial cancelled by `close_transport` while it waits for the closed connections to
/// end does not take them along: the next dial still waits for them, so its connection
/// does not overtake their queues, and the peer sees the old connection's tells first.
/// (The dial used to take the closed connections out of the record when it started to
/// wait, so cancelling it left nothing for the next dial to wait on.)
#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_dial_leaves_the_drain_to_the_next() {
    let network = InprocNetwork::new();
    let gate = ReadGate::default();
    let listener = GatedListener {
        inner: network.bind(1).unwrap(),
        gate: Some(gate.clone()),
    };
    let mut peer = Peer::serve(listener, Requests::Answer);
    let manager = Arc::new(manager(network, config(30_000, 60_000)));
    let dest = Dest::new(Location::Local(1));

    manager.send(&dest, tell(0, 0, 0)).await.unwrap();
    assert_eq!(crate::pair_and_seq(&peer.next().await.1).2, 0);
    // The peer stops reading the first connection: once closed, it stays draining.
    gate.pause();
    for seq in 1..100 {
        manager.send(&dest, tell(0, 0, seq)).await.unwrap();
    }
    assert!(manager.close_transport(&dest));

    // A send dials again; its dial waits for the closed connection...
    let cancelled = tokio::spawn({
        let (manager, dest) = (manager.clone(), dest.clone());
        async move { manager.send(&dest, tell(0, 0, 100)).await }
    });
    // ...(on this one thread, every task that is ready runs during this sleep, the dial
    // included, up to its wait)...
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(manager.has_dest(&dest), "the send did not start a dial");
    // ...and is cancelled by closing the destination again.
    assert!(manager.close_transport(&dest));
    let outcome = within(Duration::from_secs(5), "the cancelled send", cancelled).await;
    assert!(
        outcome.unwrap().is_err(),
        "the cancelled dial's send succeeded"
    );

    // The next dial must wait for the first connection as well.
    let later = tokio::spawn({
        let (manager, dest) = (manager.clone(), dest.clone());
        async move {
            for seq in 101..110 {
                manager.send(&dest, tell(0, 0, seq)).await.unwrap();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        peer.accepted(),
        1,
        "a dial connected while the closed connection was still draining"
    );

    gate.resume();
    for expected in (1..100).chain(101..110) {
        let (connection, envelope) = peer.next().await;
        let seq = crate::pair_and_seq(&envelope).2;
        assert_eq!(
            seq, expected,
            "out of order: {seq} on connection {connection}"
        );
    }
    within(Duration::from_secs(5), "the later sends", later)
        .await
        .unwrap();
    assert_eq!(peer.accepted(), 2, "the later sends dialed again");
}
