//! Promise 3.9 over TCP on 127.0.0.1: every remote tell is delivered or reported to its
//! sending proc's undeliverable handler, also when it fails after the route took it
//! (`close_transport` with thousands queued, a peer that goes away).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plexus_core::{
    Actor, ActorRef, Context, Handler, Location, Proc, ProcAddr, ProcId, RemoteActor,
    RemoteHandlers, RemoteMessage, UndeliveredRemote,
};
use plexus_gateway::{Gateway, GatewayConfig, ServeHandle};
use plexus_transport::{Dest, FlowConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::timeout;

use crate::support::any_tcp;

/// How many tells each test sends.
const SENT: u64 = 5_000;

/// The flow window of these tests' gateways, in messages.
const WINDOW: u32 = 64;

/// One counted tell.
#[derive(Debug, Serialize, Deserialize)]
struct Count(u64);
impl RemoteMessage for Count {
    const NAME: &'static str = "undeliverable-test.Count";
}

/// Counts what it handles; holds its first message until the gate opens, so tells pile
/// up behind it on the sending side.
struct Tally {
    handled: Arc<AtomicU64>,
    gate: watch::Receiver<bool>,
}

impl Actor for Tally {}

impl Handler<Count> for Tally {
    type Reply = ();
    async fn handle(&mut self, _: Count, _ctx: &mut Context<Self>) {
        let _ = self.gate.wait_for(|open| *open).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
    }
}

impl RemoteActor for Tally {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Count>()
    }
}

fn gateway() -> Gateway {
    let config = GatewayConfig {
        flow: Some(FlowConfig {
            window_messages: WINDOW,
            ..FlowConfig::default()
        }),
        ..GatewayConfig::default()
    };
    Gateway::new(Location::Local(0), config).unwrap()
}

/// The sending side: its proc counts the late reports it receives.
struct Sender {
    gateway: Gateway,
    proc: Proc,
    late: Arc<AtomicU64>,
    _attachment: plexus_gateway::Attachment,
}

fn sender() -> Sender {
    let gateway = gateway();
    let late = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&late);
    let proc = Proc::builder(ProcId::unique("sender"))
        .on_undeliverable(move |lost| {
            if let Some(remote) = lost.message.downcast_ref::<UndeliveredRemote>() {
                assert_eq!(remote.name, Count::NAME);
                assert!(remote.payload.is_some(), "the payload is kept");
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    let attachment = gateway.attach(&proc).unwrap();
    Sender {
        gateway,
        proc,
        late,
        _attachment: attachment,
    }
}

/// The receiving side: a gateway serving TCP and a gated tally.
struct Receiver {
    gateway: Gateway,
    server: ServeHandle,
    proc: Proc,
    handled: Arc<AtomicU64>,
    gate: watch::Sender<bool>,
    _attachment: plexus_gateway::Attachment,
}

async fn receiver() -> Receiver {
    let gateway = gateway();
    let server = gateway.serve(any_tcp()).await.unwrap();
    let proc = Proc::new(ProcId::unique("receiver"));
    let attachment = gateway.attach(&proc).unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let (gate, gate_rx) = watch::channel(false);
    let tally = proc
        .spawn(
            "tally",
            Tally {
                handled: Arc::clone(&handled),
                gate: gate_rx,
            },
        )
        .unwrap();
    proc.expose_remote(&tally).unwrap();
    Receiver {
        gateway,
        server,
        proc,
        handled,
        gate,
        _attachment: attachment,
    }
}

/// Sends `SENT` tells from outside any actor, in a task; returns once `queued` of them
/// have been taken by the route.
async fn start_sending(
    remote: ActorRef<Tally>,
    queued: u64,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
    let taken = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&taken);
    let task = tokio::spawn(async move {
        for n in 0..SENT {
            // An error was reported to the undeliverable handler by the ref itself.
            let _ = remote.tell(Count(n)).await;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    timeout(Duration::from_secs(10), async {
        while taken.load(Ordering::SeqCst) < queued {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the route did not take the first tells");
    (task, taken)
}

/// Waits until `done` holds, failing with `what` after `limit`.
async fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    if timeout(limit, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_err()
    {
        panic!("{what}");
    }
}

/// `close_transport` with thousands of tells queued towards a blocked recipient loses
/// none: delivered + reported undeliverable == sent, and the tells queued behind the
/// closed connection go out on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_transport_with_queued_tells_loses_none() {
    let there = receiver().await;
    let here = sender();
    let addr = ProcAddr::new(there.proc.id().clone(), there.server.location().clone());
    let remote: ActorRef<Tally> = here.proc.lookup_remote(&addr, "tally").await.unwrap();

    let (sending, _) = start_sending(remote, 4_000).await;
    let manager = here.gateway.transport().unwrap();
    assert!(manager.close_transport(&Dest::new(there.server.location().clone())));
    there.gate.send_replace(true);
    timeout(Duration::from_secs(20), sending)
        .await
        .expect("the sender finished")
        .unwrap();

    let accounted = || there.handled.load(Ordering::SeqCst) + here.proc.undeliverable_count();
    eventually(
        Duration::from_secs(20),
        "not every tell was accounted for",
        || accounted() == SENT,
    )
    .await;
    // Nothing arrives or is reported twice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(accounted(), SENT);
    assert_eq!(
        here.late.load(Ordering::SeqCst),
        here.proc.undeliverable_count(),
        "every report is a late one"
    );
    drop(there.gateway);
}

/// When the receiving gateway goes away with thousands of tells queued towards it,
/// every tell it had not been handed is reported to the sender's undeliverable handler:
/// at most one flow window (the tells in transit when it went) is unaccounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_loss_reports_the_queued_tells() {
    let there = receiver().await;
    let here = sender();
    let addr = ProcAddr::new(there.proc.id().clone(), there.server.location().clone());
    let remote: ActorRef<Tally> = here.proc.lookup_remote(&addr, "tally").await.unwrap();

    let (sending, _) = start_sending(remote, 4_000).await;
    let Receiver {
        gateway,
        server,
        proc,
        handled,
        gate,
        _attachment,
    } = there;
    drop((server, _attachment, gateway));
    gate.send_replace(true);
    timeout(Duration::from_secs(20), sending)
        .await
        .expect("the sender finished")
        .unwrap();

    let accounted = || handled.load(Ordering::SeqCst) + here.proc.undeliverable_count();
    eventually(
        Duration::from_secs(20),
        "the queued tells were not reported",
        || accounted() + u64::from(WINDOW) >= SENT,
    )
    .await;
    assert!(accounted() <= SENT, "nothing is counted twice");
    assert!(
        here.late.load(Ordering::SeqCst) > 0,
        "tells lost after the route took them were reported"
    );
    drop(proc);
}

/// Sends what it is given to a remote tally, from within its own task.
struct Relay;
impl Actor for Relay {}

/// A local message: tell `Count(n)` to the remote tally.
struct Forward(ActorRef<Tally>, u64);

impl Handler<Forward> for Relay {
    type Reply = ();
    async fn handle(&mut self, Forward(to, n): Forward, _ctx: &mut Context<Self>) {
        // A refusal after the route took the tell comes back to the proc's handler.
        let _ = to.tell(Count(n)).await;
    }
}

/// A tell from an actor that the receiving side refuses (its actor has stopped, or its
/// proc is not attached there) is reported back to the sending proc's undeliverable
/// handler, with the name and the payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_refused_by_the_receiving_side_come_back() {
    let there = receiver().await;
    let here = sender();
    let (gate, gate_rx) = watch::channel(true);
    let victim = there
        .proc
        .spawn(
            "victim",
            Tally {
                handled: Arc::new(AtomicU64::new(0)),
                gate: gate_rx,
            },
        )
        .unwrap();
    there.proc.expose_remote(&victim).unwrap();
    let addr = ProcAddr::new(there.proc.id().clone(), there.server.location().clone());
    let remote: ActorRef<Tally> = here.proc.lookup_remote(&addr, "victim").await.unwrap();
    victim.stop();
    timeout(Duration::from_secs(5), victim.wait_for_stop())
        .await
        .expect("the victim did not stop");
    drop(gate);

    // A proc nobody attached at the receiving gateway.
    let stranger: ActorRef<Tally> = here.proc.remote_ref(plexus_core::RemoteAddr {
        actor: plexus_core::ActorId::new(ProcId::unique("stranger"), "tally", 0),
        location: there.server.location().clone(),
    });

    let relay = here.proc.spawn("relay", Relay).unwrap();
    relay.tell(Forward(remote, 1)).await.unwrap();
    relay.tell(Forward(stranger, 2)).await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the refused tells were not reported back",
        || here.late.load(Ordering::SeqCst) == 2,
    )
    .await;
    assert_eq!(here.proc.undeliverable_count(), 2);
    assert_eq!(there.handled.load(Ordering::SeqCst), 0);
}
