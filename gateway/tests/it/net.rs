//! Two networked gateways in one process over real TCP on 127.0.0.1 (and `local:`):
//! tells in order, asks, asks that fail fast when the peer goes away, and procs sharing
//! one gateway without the network.

use std::time::{Duration, Instant};

use plexus_core::{ActorId, Proc, ProcId, RemoteAskError};
use plexus_gateway::{RemoteRequestError, ServeHandle};
use plexus_transport::InprocNetwork;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{
    Echo, Stall, WAIT, any_tcp, ask, networked, ping, spawn_echoer, spawn_recorder,
};

/// 10,000 tells from one gateway to a proc attached to another arrive over TCP, all of
/// them and in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_over_tcp_arrive_in_order() {
    let network = InprocNetwork::new();
    let (sender, receiver) = (networked(&network), networked(&network));
    let server = receiver.serve(any_tcp()).await.unwrap();
    let proc = Proc::new(ProcId::unique("far"));
    let _attached = receiver.attach(&proc).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let recorder = spawn_recorder(&proc, "far", seen_tx);

    const COUNT: u64 = 10_000;
    for n in 0..COUNT {
        sender
            .send_to(server.location(), ping(recorder.clone(), n))
            .await
            .unwrap();
    }
    for expected in 0..COUNT {
        let (_, n) = timeout(WAIT, seen.recv())
            .await
            .unwrap_or_else(|_| panic!("tell {expected} did not arrive"))
            .unwrap();
        assert_eq!(n, expected, "tells arrived out of order");
    }
    assert_eq!(sender.stats().bounced, 0);
    assert_eq!(sender.stats().forwarded, COUNT);
}

/// Asks over TCP get their replies; an ask for a missing actor gets the typed error of
/// the answering side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_over_tcp_get_replies_and_typed_errors() {
    let network = InprocNetwork::new();
    let (asker, answerer) = (networked(&network), networked(&network));
    let server = answerer.serve(any_tcp()).await.unwrap();
    let proc = Proc::new(ProcId::unique("answers"));
    let _attached = answerer.attach(&proc).unwrap();
    let echo = spawn_echoer(&proc);

    for n in 0..100 {
        let reply = asker
            .request_to(server.location(), ask(echo.clone(), &Echo(n)), WAIT)
            .await
            .unwrap();
        assert_eq!(postcard::from_bytes::<u64>(&reply).unwrap(), n + 1);
    }
    let missing = ActorId::new(proc.id().clone(), "missing", 0);
    assert_eq!(
        asker
            .request_to(server.location(), ask(missing, &Echo(1)), WAIT)
            .await,
        Err(RemoteRequestError::Remote(RemoteAskError::NotFound {
            actor: "missing".into()
        }))
    );
}

/// An ask in flight fails with `Disconnected` as soon as the answering gateway is
/// dropped, well before its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_fails_disconnected_when_the_peer_gateway_is_dropped() {
    let network = InprocNetwork::new();
    let (asker, answerer) = (networked(&network), networked(&network));
    let server = answerer.serve(any_tcp()).await.unwrap();
    let location = server.location().clone();
    let proc = Proc::new(ProcId::unique("doomed"));
    let attached = answerer.attach(&proc).unwrap();
    let echo = spawn_echoer(&proc);
    // The connection is up before the stalled ask starts.
    asker
        .request_to(&location, ask(echo.clone(), &Echo(0)), WAIT)
        .await
        .unwrap();

    let limit = Duration::from_secs(20);
    let pending = tokio::spawn({
        let asker = asker.clone();
        let location = location.clone();
        async move {
            let started = Instant::now();
            let outcome = asker.request_to(&location, ask(echo, &Stall), limit).await;
            (outcome, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop((server, attached, answerer));

    let (outcome, took) = timeout(WAIT, pending).await.unwrap().unwrap();
    assert_eq!(
        outcome,
        Err(RemoteRequestError::Disconnected { dest: location })
    );
    assert!(took < limit / 4, "the ask failed only after {took:?}");
}

/// Two gateways in one process reach each other at `local:` locations over a shared
/// in-process network, with the same tells and asks as over TCP.
#[tokio::test]
async fn local_locations_carry_tells_and_asks() {
    let network = InprocNetwork::new();
    let (a, b) = (networked(&network), networked(&network));
    let server: ServeHandle = b.serve("local:41".parse().unwrap()).await.unwrap();
    assert_eq!(server.location().to_string(), "local:41");
    let proc = Proc::new(ProcId::unique("inproc"));
    let _attached = b.attach(&proc).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let recorder = spawn_recorder(&proc, "inproc", seen_tx);
    let echo = spawn_echoer(&proc);

    a.post_to(server.location(), ping(recorder, 3)).unwrap();
    assert_eq!(
        timeout(WAIT, seen.recv()).await.unwrap(),
        Some(("inproc", 3))
    );
    let reply = a
        .request_to(server.location(), ask(echo, &Echo(41)), WAIT)
        .await
        .unwrap();
    assert_eq!(postcard::from_bytes::<u64>(&reply).unwrap(), 42);
}

/// Two procs sharing one networked gateway play ping-pong through it with no network
/// traffic: nothing is forwarded and no destination is dialed.
#[tokio::test]
async fn procs_sharing_a_gateway_play_without_the_network() {
    let network = InprocNetwork::new();
    let gateway = networked(&network);
    let server = gateway.serve(any_tcp()).await.unwrap();
    let (ping_side, pong_side) = (
        Proc::new(ProcId::unique("ping")),
        Proc::new(ProcId::unique("pong")),
    );
    let _a = gateway.attach(&ping_side).unwrap();
    let _b = gateway.attach(&pong_side).unwrap();
    let (ping_echo, pong_echo) = (spawn_echoer(&ping_side), spawn_echoer(&pong_side));

    let mut ball = 0;
    for _ in 0..50 {
        for echo in [&pong_echo, &ping_echo] {
            let reply = gateway
                .request_to(server.location(), ask(echo.clone(), &Echo(ball)), WAIT)
                .await
                .unwrap();
            ball = postcard::from_bytes(&reply).unwrap();
        }
    }
    assert_eq!(ball, 100);
    let stats = gateway.stats();
    assert_eq!(stats.forwarded, 0);
    assert_eq!(stats.delivered, 100);
    assert_eq!(gateway.transport().unwrap().dest_count(), 0);
    assert_eq!(server.connection_count(), 0);
}

/// A server's handle resolves `wait` once its gateway is dropped, and the connections it
/// accepted are closed.
#[tokio::test]
async fn server_ends_when_its_gateway_is_dropped() {
    let network = InprocNetwork::new();
    let (client, gateway) = (networked(&network), networked(&network));
    let mut server = gateway.serve(any_tcp()).await.unwrap();
    let proc = Proc::new(ProcId::unique("served"));
    let attached = gateway.attach(&proc).unwrap();
    let echo = spawn_echoer(&proc);
    client
        .request_to(server.location(), ask(echo, &Echo(1)), WAIT)
        .await
        .unwrap();
    assert_eq!(server.connection_count(), 1);

    drop((attached, gateway));
    timeout(WAIT, server.wait())
        .await
        .expect("the server did not end with its gateway")
        .unwrap();
    timeout(WAIT, async {
        while server.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("an accepted connection outlived its gateway");
}

/// On the wire, a typed ask error is a `Failed` response named `plexus.AskError` whose
/// payload is the postcard `RemoteAskError` (the gateway contract), which the transport
/// hands to a plain requester as `RequestError::FailedWith`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_ask_errors_travel_as_failed_responses() {
    use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
    use plexus_transport::{
        ConnectionConfig, Dest, Hello, RequestError, TcpConfig, TcpWireBuilder, WireBuilder,
        perform_handshake, spawn_connection,
    };

    let network = InprocNetwork::new();
    let answerer = networked(&network);
    let server = answerer.serve(any_tcp()).await.unwrap();
    let proc = Proc::new(ProcId::unique("answers"));
    let _attached = answerer.attach(&proc).unwrap();

    let mut wires = TcpWireBuilder::new(TcpConfig::default())
        .connect(&Dest::new(server.location().clone()))
        .await
        .unwrap();
    let mut wire = wires.pop().unwrap();
    let hello = Hello::new(ProcId::unique("plain-client"), 1);
    let negotiated = perform_handshake(&mut wire, hello, WAIT).await.unwrap();
    let connection =
        spawn_connection(wire, negotiated, ConnectionConfig::default(), |_| {}).unwrap();

    let missing = ActorId::new(proc.id().clone(), "missing", 0);
    let request = NetworkEnvelope::message(
        None,
        Recipient::Actor(missing),
        EnvelopeKind::Request { id: 0 },
        &Echo(1),
    )
    .unwrap();
    match connection.request(request, WAIT).await {
        Err(RequestError::FailedWith { name, payload, .. }) => {
            assert_eq!(&*name, plexus_gateway::protocol::ASK_ERROR);
            assert_eq!(
                postcard::from_bytes::<RemoteAskError>(&payload).unwrap(),
                RemoteAskError::NotFound {
                    actor: "missing".into()
                }
            );
        }
        other => panic!("expected a failed response with the error, got {other:?}"),
    }
}

/// A group request (`RequestAll`, to a group or to an actor) and a request to a group
/// are answered at once with a typed `Unroutable` error: gateways do not route requests
/// to groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_requests_are_refused_with_a_typed_error() {
    use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
    use plexus_transport::{
        ConnectionConfig, Dest, Hello, RequestError, TcpConfig, TcpWireBuilder, WireBuilder,
        perform_handshake, spawn_connection,
    };

    let network = InprocNetwork::new();
    let answerer = networked(&network);
    let server = answerer.serve(any_tcp()).await.unwrap();
    let proc = Proc::new(ProcId::unique("answers"));
    let _attached = answerer.attach(&proc).unwrap();
    let echo = spawn_echoer(&proc);

    let mut wires = TcpWireBuilder::new(TcpConfig::default())
        .connect(&Dest::new(server.location().clone()))
        .await
        .unwrap();
    let mut wire = wires.pop().unwrap();
    let hello = Hello::new(ProcId::unique("plain-client"), 1);
    let negotiated = perform_handshake(&mut wire, hello, WAIT).await.unwrap();
    // Responses to ids the connection did not hand out come to the inbound handler.
    let (responses_tx, mut responses) = mpsc::unbounded_channel();
    let connection = spawn_connection(
        wire,
        negotiated,
        ConnectionConfig::default(),
        move |envelope: NetworkEnvelope| {
            let _ = responses_tx.send(envelope);
        },
    )
    .unwrap();
    let refusal = |payload: &[u8]| {
        let error = postcard::from_bytes::<RemoteAskError>(payload).unwrap();
        assert!(
            matches!(error, RemoteAskError::Unroutable { .. }),
            "{error:?}"
        );
    };

    let group = Recipient::Group("workers".into());
    for (id, recipient) in [(1_000, group.clone()), (1_001, Recipient::Actor(echo))] {
        let request = NetworkEnvelope::message(
            None,
            recipient.clone(),
            EnvelopeKind::RequestAll { id },
            &Echo(1),
        )
        .unwrap();
        connection.send(request).await.unwrap();
        let response = timeout(WAIT, responses.recv())
            .await
            .unwrap_or_else(|_| panic!("{recipient}: no answer"))
            .unwrap();
        assert_eq!(response.kind.request_id(), Some(id), "{recipient}");
        assert!(matches!(
            response.kind,
            EnvelopeKind::Response {
                outcome: plexus_codec::Outcome::Failed,
                ..
            }
        ));
        assert_eq!(&*response.name, plexus_gateway::protocol::ASK_ERROR);
        refusal(&response.payload);
    }

    let request =
        NetworkEnvelope::message(None, group, EnvelopeKind::Request { id: 0 }, &Echo(1)).unwrap();
    let started = Instant::now();
    match connection.request(request, WAIT).await {
        Err(RequestError::FailedWith { name, payload, .. }) => {
            assert_eq!(&*name, plexus_gateway::protocol::ASK_ERROR);
            refusal(&payload);
        }
        other => panic!("expected a typed refusal, got {other:?}"),
    }
    assert!(started.elapsed() < WAIT / 2, "answered at once");
}
