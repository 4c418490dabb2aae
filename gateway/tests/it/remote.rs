//! Remote `ActorRef`s through two gateways over TCP on 127.0.0.1: tell, ask, a ref sent
//! inside a message used to reply, asks failing fast and watches firing when the peer
//! gateway goes away.

use std::time::{Duration, Instant};

use plexus_core::{
    Actor, ActorRef, AskError, Context, Handler, Proc, ProcAddr, ProcId, RemoteActor,
    RemoteHandlers, RemoteMessage, StopReason,
};
use plexus_gateway::{Gateway, ServeHandle};
use plexus_transport::InprocNetwork;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{WAIT, any_tcp, networked};

/// Adds to the counter.
#[derive(Debug, Serialize, Deserialize)]
struct Add(u64);
impl RemoteMessage for Add {
    const NAME: &'static str = "remote-test.Add";
}

/// Reads the counter.
#[derive(Debug, Serialize, Deserialize)]
struct Get;
impl RemoteMessage for Get {
    const NAME: &'static str = "remote-test.Get";
}

/// Asks for a pong to be told to `reply_to`.
#[derive(Debug, Serialize, Deserialize)]
struct PingMe {
    n: u64,
    reply_to: ActorRef<Client>,
}
impl RemoteMessage for PingMe {
    const NAME: &'static str = "remote-test.PingMe";
}

/// The answer to a `PingMe`.
#[derive(Debug, Serialize, Deserialize)]
struct Pong(u64);
impl RemoteMessage for Pong {
    const NAME: &'static str = "remote-test.Pong";
}

/// Sits on the request for a minute.
#[derive(Debug, Serialize, Deserialize)]
struct Hang;
impl RemoteMessage for Hang {
    const NAME: &'static str = "remote-test.Hang";
}

struct Counter(u64);
impl Actor for Counter {}

impl Handler<Add> for Counter {
    type Reply = ();
    async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) {
        self.0 += n;
    }
}

impl Handler<Get> for Counter {
    type Reply = u64;
    async fn handle(&mut self, _: Get, _ctx: &mut Context<Self>) -> u64 {
        self.0
    }
}

impl Handler<PingMe> for Counter {
    type Reply = ();
    async fn handle(&mut self, PingMe { n, reply_to }: PingMe, _ctx: &mut Context<Self>) {
        reply_to.tell(Pong(n)).await.unwrap();
    }
}

impl Handler<Hang> for Counter {
    type Reply = ();
    async fn handle(&mut self, _: Hang, _ctx: &mut Context<Self>) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

impl RemoteActor for Counter {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new()
            .tell::<Add>()
            .ask::<Get>()
            .tell::<PingMe>()
            .ask::<Hang>()
    }
}

struct Client(mpsc::UnboundedSender<u64>);
impl Actor for Client {}

impl Handler<Pong> for Client {
    type Reply = ();
    async fn handle(&mut self, Pong(n): Pong, _ctx: &mut Context<Self>) {
        let _ = self.0.send(n);
    }
}

impl RemoteActor for Client {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Pong>()
    }
}

/// One side: a networked gateway serving TCP, and a proc attached to it.
struct Side {
    gateway: Gateway,
    server: ServeHandle,
    proc: Proc,
    _attachment: plexus_gateway::Attachment,
}

async fn side(network: &InprocNetwork, label: &str) -> Side {
    let gateway = networked(network);
    let server = gateway.serve(any_tcp()).await.unwrap();
    let proc = Proc::new(ProcId::unique(label));
    let attachment = gateway.attach(&proc).unwrap();
    assert_eq!(proc.local_location().as_ref(), Some(server.location()));
    Side {
        gateway,
        server,
        proc,
        _attachment: attachment,
    }
}

impl Side {
    fn addr(&self) -> ProcAddr {
        ProcAddr::new(self.proc.id().clone(), self.server.location().clone())
    }
}

/// A ref found by remote lookup tells and asks an actor behind another gateway over TCP,
/// with tells in order before the ask that reads their sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ref_tells_and_asks_across_gateways() {
    let network = InprocNetwork::new();
    let (here, there) = (side(&network, "here").await, side(&network, "there").await);
    let counter = there.proc.spawn("counter", Counter(0)).unwrap();
    there.proc.expose_remote(&counter).unwrap();

    let remote: ActorRef<Counter> = here
        .proc
        .lookup_remote(&there.addr(), "counter")
        .await
        .unwrap();
    assert!(remote.is_remote());
    assert_eq!(remote.id(), counter.id());
    for n in 1..=100 {
        remote.tell(Add(n)).await.unwrap();
    }
    assert_eq!(timeout(WAIT, remote.ask(Get)).await.unwrap().unwrap(), 5050);
    assert_eq!(here.gateway.stats().bounced, 0);
}

/// A ref to a local actor sent inside a message to another gateway's actor is used there
/// to reply, over a connection dialed back to the sender's location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_sent_inside_a_message_is_used_to_reply() {
    let network = InprocNetwork::new();
    let (here, there) = (
        side(&network, "asker").await,
        side(&network, "replier").await,
    );
    let counter = there.proc.spawn("counter", Counter(0)).unwrap();
    there.proc.expose_remote(&counter).unwrap();
    let (pongs_tx, mut pongs) = mpsc::unbounded_channel();
    let client = here.proc.spawn("client", Client(pongs_tx)).unwrap();
    here.proc.expose_remote(&client).unwrap();

    let remote: ActorRef<Counter> = here
        .proc
        .lookup_remote(&there.addr(), "counter")
        .await
        .unwrap();
    for n in 0..10 {
        remote
            .tell(PingMe {
                n,
                reply_to: client.clone(),
            })
            .await
            .unwrap();
    }
    for expected in 0..10 {
        let n = timeout(WAIT, pongs.recv())
            .await
            .unwrap_or_else(|_| panic!("pong {expected} did not come back"))
            .unwrap();
        assert_eq!(n, expected);
    }
    assert!(
        there.gateway.stats().forwarded >= 10,
        "the replies crossed the network"
    );
}

/// When the answering gateway goes away, an ask in flight through a remote ref fails with
/// `Disconnected` at once, and a watch on the remote actor fires with `Disconnected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_loss_fails_asks_and_fires_watches() {
    let network = InprocNetwork::new();
    let (here, there) = (
        side(&network, "survivor").await,
        side(&network, "victim").await,
    );
    let counter = there.proc.spawn("counter", Counter(0)).unwrap();
    there.proc.expose_remote(&counter).unwrap();
    let remote: ActorRef<Counter> = here
        .proc
        .lookup_remote(&there.addr(), "counter")
        .await
        .unwrap();

    let watcher = tokio::spawn({
        let remote = remote.clone();
        async move { remote.wait_for_stop().await }
    });
    let limit = Duration::from_secs(20);
    let asking = tokio::spawn({
        let remote = remote.clone();
        async move {
            let started = Instant::now();
            (remote.ask_timeout(Hang, limit).await, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The gateway goes; the proc and its actor stay, so only the lost peer can fire
    // the watch.
    let Side {
        gateway,
        server,
        proc,
        _attachment,
    } = there;
    drop((server, _attachment, gateway));

    let (outcome, took) = timeout(WAIT, asking).await.unwrap().unwrap();
    assert!(
        matches!(outcome, Err(AskError::Disconnected { .. })),
        "got {outcome:?}"
    );
    assert!(took < limit / 4, "the ask failed only after {took:?}");
    let reason = timeout(WAIT, watcher).await.unwrap().unwrap();
    assert!(
        matches!(reason, StopReason::Disconnected),
        "watch fired with {reason:?}"
    );
    assert!(counter.is_alive());
    drop(proc);
}

/// Remote refs between two procs attached to one networked gateway reach each other
/// through it with no network traffic: nothing forwarded, nothing dialed.
#[tokio::test]
async fn remote_refs_between_procs_of_one_gateway_skip_the_network() {
    let network = InprocNetwork::new();
    let gateway = networked(&network);
    let server = gateway.serve(any_tcp()).await.unwrap();
    let (left, right) = (
        Proc::new(ProcId::unique("left")),
        Proc::new(ProcId::unique("right")),
    );
    let _left = gateway.attach(&left).unwrap();
    let _right = gateway.attach(&right).unwrap();
    let counter = right.spawn("counter", Counter(0)).unwrap();
    right.expose_remote(&counter).unwrap();

    let addr = ProcAddr::new(right.id().clone(), server.location().clone());
    let remote: ActorRef<Counter> = left.lookup_remote(&addr, "counter").await.unwrap();
    assert!(remote.is_remote());
    for n in 0..10 {
        remote.tell(Add(n)).await.unwrap();
    }
    assert_eq!(timeout(WAIT, remote.ask(Get)).await.unwrap().unwrap(), 45);
    assert_eq!(gateway.stats().forwarded, 0);
    assert_eq!(gateway.transport().unwrap().dest_count(), 0);
    assert_eq!(server.connection_count(), 0);
}

/// The process-wide gateway is built once and shared by every caller.
#[tokio::test]
async fn global_gateway_is_built_once() {
    let first = Gateway::global().unwrap();
    let second = Gateway::global().unwrap();
    let proc = Proc::new(ProcId::unique("global-user"));
    let _attached = first.attach(&proc).unwrap();
    assert!(second.is_attached(proc.id()));
}

/// A gateway serves and dials `unix://` locations.
#[cfg(all(unix, feature = "unix"))]
#[tokio::test]
async fn unix_locations_carry_remote_refs() {
    let dir = tempfile::tempdir().unwrap();
    let location: plexus_core::Location =
        format!("unix://{}", dir.path().join("gateway.sock").display())
            .parse()
            .unwrap();
    let network = InprocNetwork::new();
    let (near, far) = (networked(&network), networked(&network));
    let server = far.serve(location.clone()).await.unwrap();
    assert_eq!(server.location(), &location);
    let (here, there) = (
        Proc::new(ProcId::unique("near")),
        Proc::new(ProcId::unique("far")),
    );
    let _here = near.attach(&here).unwrap();
    let _there = far.attach(&there).unwrap();
    let counter = there.spawn("counter", Counter(0)).unwrap();
    there.expose_remote(&counter).unwrap();

    let remote: ActorRef<Counter> = here
        .lookup_remote(&ProcAddr::new(there.id().clone(), location), "counter")
        .await
        .unwrap();
    remote.tell(Add(7)).await.unwrap();
    assert_eq!(timeout(WAIT, remote.ask(Get)).await.unwrap().unwrap(), 7);
}

/// A proc attached through a proxy advertises the proxy's location in its refs, and a
/// remote ref found at that location reaches it: tells and asks relayed by the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_proc_is_reached_by_remote_refs_at_the_proxy() {
    let network = InprocNetwork::new();
    let (front, home) = (networked(&network), networked(&network));
    let front_server = front.serve(any_tcp()).await.unwrap();
    let via = front_server.location().clone();
    let roaming = Proc::new(ProcId::unique("roaming"));
    let counter = roaming.spawn("counter", Counter(0)).unwrap();
    roaming.expose_remote(&counter).unwrap();
    let _attachment = home.attach_through(&roaming, via.clone()).await.unwrap();
    assert_eq!(roaming.local_location(), Some(via.clone()));

    let client = side(&network, "client").await;
    let addr = ProcAddr::new(roaming.id().clone(), via);
    let remote: ActorRef<Counter> = client.proc.lookup_remote(&addr, "counter").await.unwrap();
    remote.tell(Add(20)).await.unwrap();
    remote.tell(Add(22)).await.unwrap();
    assert_eq!(timeout(WAIT, remote.ask(Get)).await.unwrap().unwrap(), 42);
    assert!(
        front.stats().forwarded >= 4,
        "front relayed {:?}",
        front.stats()
    );
}
