//! The messaging promises of design §3 on the full remote path: remote refs between procs
//! attached to two gateways over TCP on 127.0.0.1. Each test names the promise it guards:
//! 3.3 (`try_tell` is `Full` and `tell(..).await` waits when the remote flow is spent),
//! 3.6 (an undecodable request is answered `Decode` and the connection keeps serving),
//! 3.7 (a remote watch fires after the watched actor's earlier messages, and once across
//! a closed connection), 3.8 (a proc restarted at the same location is a new incarnation
//! old refs never reach).

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_core::{
    Actor, ActorRef, AskError, Context, Handler, LinkDied, Mailbox, Proc, ProcAddr, ProcId,
    RemoteActor, RemoteHandlers, RemoteMessage, StopReason, TryTellError,
};
use plexus_gateway::{Attachment, Gateway, ServeHandle};
use plexus_transport::InprocNetwork;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::support::{WAIT, any_tcp, networked};

// ---------------------------------------------------------------------------------------
// Messages and actors.

/// A numbered tell, recorded by the sink.
#[derive(Debug, Serialize, Deserialize)]
struct Note(u64);
impl RemoteMessage for Note {
    const NAME: &'static str = "promises.Note";
}

/// An ask answered with its number plus one.
#[derive(Debug, Serialize, Deserialize)]
struct Echo(u64);
impl RemoteMessage for Echo {
    const NAME: &'static str = "promises.Echo";
}

/// Sent under `Echo`'s wire name with no payload: the receiver cannot decode it.
#[derive(Debug, Serialize, Deserialize)]
struct Misshapen;
impl RemoteMessage for Misshapen {
    const NAME: &'static str = "promises.Echo";
}

/// A wire name the receiver has no handler for.
#[derive(Debug, Serialize, Deserialize)]
struct Unknown(u64);
impl RemoteMessage for Unknown {
    const NAME: &'static str = "promises.Unknown";
}

/// Holds the sink in its handler until released: sent locally, never over the wire.
struct Block(oneshot::Sender<()>, oneshot::Receiver<()>);

/// Records notes, answers echoes, can be blocked.
struct Sink {
    seen: Arc<Mutex<Vec<u64>>>,
}
impl Actor for Sink {}

impl Handler<Note> for Sink {
    type Reply = ();
    async fn handle(&mut self, Note(n): Note, _ctx: &mut Context<Self>) {
        self.seen.lock().unwrap().push(n);
    }
}

impl Handler<Echo> for Sink {
    type Reply = u64;
    async fn handle(&mut self, Echo(n): Echo, _ctx: &mut Context<Self>) -> u64 {
        n + 1
    }
}

impl Handler<Block> for Sink {
    type Reply = ();
    async fn handle(&mut self, Block(started, release): Block, _ctx: &mut Context<Self>) {
        let _ = started.send(());
        let _ = release.await;
    }
}

impl RemoteActor for Sink {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Note>().ask::<Echo>()
    }
}

/// The sender's view of a `Sink` whose two sides disagree on the remote messages: it
/// claims asks the sink cannot take (a wire name of its own, and `Echo`'s wire name with
/// another shape).
struct Confused;
impl Actor for Confused {}

impl Handler<Misshapen> for Confused {
    type Reply = u64;
    async fn handle(&mut self, _: Misshapen, _ctx: &mut Context<Self>) -> u64 {
        0
    }
}

impl Handler<Unknown> for Confused {
    type Reply = u64;
    async fn handle(&mut self, Unknown(n): Unknown, _ctx: &mut Context<Self>) -> u64 {
        n
    }
}

impl RemoteActor for Confused {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().ask::<Misshapen>().ask::<Unknown>()
    }
}

/// Asks the talker to tell `count` notes to `to`, then stop.
#[derive(Debug, Serialize, Deserialize)]
struct TalkThenStop {
    to: ActorRef<Listener>,
    count: u64,
}
impl RemoteMessage for TalkThenStop {
    const NAME: &'static str = "promises.TalkThenStop";
}

/// Tells notes to whoever asks, then stops.
struct Talker;
impl Actor for Talker {}

impl Handler<TalkThenStop> for Talker {
    type Reply = ();
    async fn handle(&mut self, request: TalkThenStop, ctx: &mut Context<Self>) {
        for n in 0..request.count {
            if request.to.tell(Note(n)).await.is_err() {
                break;
            }
        }
        ctx.stop();
    }
}

impl RemoteActor for Talker {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<TalkThenStop>()
    }
}

/// What the listener saw, in order: notes and the watch notice.
#[derive(Debug, Clone, PartialEq)]
enum Heard {
    Note(u64),
    Died(StopReason),
}

/// Watches the talker and records its notes and the notice in one sequence.
struct Listener {
    heard: Arc<Mutex<Vec<Heard>>>,
}

impl Actor for Listener {
    async fn on_link_died(
        &mut self,
        _ctx: &mut Context<Self>,
        died: LinkDied,
    ) -> ControlFlow<StopReason> {
        self.heard.lock().unwrap().push(Heard::Died(died.reason));
        ControlFlow::Continue(())
    }
}

impl Handler<Note> for Listener {
    type Reply = ();
    async fn handle(&mut self, Note(n): Note, _ctx: &mut Context<Self>) {
        self.heard.lock().unwrap().push(Heard::Note(n));
    }
}

/// Watches the given talker.
struct WatchTalker(ActorRef<Talker>);
impl Handler<WatchTalker> for Listener {
    type Reply = ();
    async fn handle(&mut self, WatchTalker(talker): WatchTalker, ctx: &mut Context<Self>) {
        ctx.watch(&talker);
    }
}

impl RemoteActor for Listener {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Note>()
    }
}

/// Tells a note to a sink from inside an actor, so a refusal names a sender to report to
/// (a tell from outside any actor is only counted where it is refused).
struct Relay;
impl Actor for Relay {}

/// A local message: tell `Note(n)` to the sink.
struct Forward(ActorRef<Sink>, u64);
impl Handler<Forward> for Relay {
    type Reply = ();
    async fn handle(&mut self, Forward(to, n): Forward, _ctx: &mut Context<Self>) {
        // A refusal after the route took the tell comes back to the proc's handler.
        let _ = to.tell(Note(n)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures.

/// One side: a networked gateway serving TCP, and a proc attached to it.
struct Side {
    gateway: Gateway,
    server: ServeHandle,
    proc: Proc,
    _attachment: Attachment,
}

async fn side(network: &InprocNetwork, location: plexus_core::Location, id: ProcId) -> Side {
    let gateway = networked(network);
    let server = gateway.serve(location).await.unwrap();
    let proc = Proc::new(id);
    let attachment = gateway.attach(&proc).unwrap();
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

/// Spawns a sink named `sink` on `side` with `mailbox`, exposed to remote refs.
fn spawn_sink(side: &Side, mailbox: Mailbox) -> (ActorRef<Sink>, Arc<Mutex<Vec<u64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = side
        .proc
        .spawn_with("sink", Sink { seen: seen.clone() }, mailbox)
        .unwrap();
    side.proc.expose_remote(&sink).unwrap();
    (sink, seen)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

// ---------------------------------------------------------------------------------------
// Tests.

/// Promise 3.3: with the remote recipient blocked, `try_tell` through gateways over TCP
/// accepts until the flow's credit (or the way to it) is spent, then hands the message
/// back as `Full` instead of queueing without bound; once released, every accepted tell
/// arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_try_tell_is_full_once_the_flow_is_spent() {
    let network = InprocNetwork::new();
    let here = side(&network, any_tcp(), ProcId::unique("here")).await;
    let there = side(&network, any_tcp(), ProcId::unique("there")).await;
    let (sink, seen) = spawn_sink(&there, Mailbox::Bounded(1));
    let remote: ActorRef<Sink> = timeout(WAIT, here.proc.lookup_remote(&there.addr(), "sink"))
        .await
        .unwrap()
        .unwrap();

    let (started, running) = oneshot::channel();
    let (release, blocked) = oneshot::channel();
    sink.tell(Block(started, blocked)).await.unwrap();
    timeout(WAIT, running).await.unwrap().unwrap();

    // Far more than any credit window: the loop must meet `Full` long before its end.
    const LIMIT: u64 = 1_000_000;
    let mut accepted = 0u64;
    let full = loop {
        assert!(accepted < LIMIT, "{LIMIT} try_tells accepted, never Full");
        match remote.try_tell(Note(accepted)) {
            Ok(()) => accepted += 1,
            Err(error) => break error,
        }
        if accepted % 64 == 0 {
            // Let the connection carry what it holds, so `Full` means the flow is spent.
            tokio::task::yield_now().await;
        }
    };
    assert!(matches!(full, TryTellError::Full { .. }), "{full:?}");
    assert_eq!(full.into_message().map(|Note(n)| n), Some(accepted));
    assert_eq!(here.proc.undeliverable_count(), 0, "Full is not a loss");

    release.send(()).unwrap();
    eventually("the accepted tells", || {
        seen.lock().unwrap().len() as u64 == accepted
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), (0..accepted).collect::<Vec<u64>>());
    // Credit came back: a waiting tell goes through again.
    timeout(WAIT, remote.tell(Note(accepted)))
        .await
        .unwrap()
        .unwrap();
    eventually("the tell after the release", || {
        seen.lock().unwrap().len() as u64 == accepted + 1
    })
    .await;
}

/// Promise 3.3: with the remote recipient blocked, `tell(..).await` through gateways over
/// TCP stops returning once the flow's credit (and the bounded way to it) is spent,
/// instead of queueing without bound, and goes on when the recipient drains; every tell
/// arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_tell_waits_for_flow_credit() {
    let network = InprocNetwork::new();
    let here = side(&network, any_tcp(), ProcId::unique("here")).await;
    let there = side(&network, any_tcp(), ProcId::unique("there")).await;
    let (sink, seen) = spawn_sink(&there, Mailbox::Bounded(1));
    let remote: ActorRef<Sink> = timeout(WAIT, here.proc.lookup_remote(&there.addr(), "sink"))
        .await
        .unwrap()
        .unwrap();

    let (started, running) = oneshot::channel();
    let (release, blocked) = oneshot::channel();
    sink.tell(Block(started, blocked)).await.unwrap();
    timeout(WAIT, running).await.unwrap().unwrap();

    // Far more than a credit window of the default flow configuration.
    const COUNT: u64 = 20_000;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sending = tokio::spawn({
        let (remote, sent) = (remote.clone(), sent.clone());
        async move {
            for n in 0..COUNT {
                remote.tell(Note(n)).await.unwrap();
                sent.store(n + 1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    // The sender stalls: its count stops moving well short of the end.
    let stalled_at = timeout(WAIT, async {
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = sent.load(std::sync::atomic::Ordering::SeqCst);
            if now == last {
                break now;
            }
            last = now;
        }
    })
    .await
    .expect("the sender never stopped moving");
    assert!(
        stalled_at < COUNT,
        "all {COUNT} tells returned although the recipient took none"
    );
    assert!(!sending.is_finished());
    assert!(seen.lock().unwrap().is_empty());

    release.send(()).unwrap();
    timeout(WAIT * 4, sending)
        .await
        .expect("the sender did not finish once the recipient drained")
        .unwrap();
    eventually("every tell", || seen.lock().unwrap().len() as u64 == COUNT).await;
    assert_eq!(*seen.lock().unwrap(), (0..COUNT).collect::<Vec<u64>>());
    assert_eq!(here.proc.undeliverable_count(), 0);
}

/// Promise 3.6: an ask the receiving side cannot decode (its wire name carries the wrong
/// shape) is answered `Decode`, one under a wire name it has no handler for `Unhandled`,
/// and the same connection serves the good tells and asks after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_remote_ask_is_decode_and_the_connection_serves_on() {
    let network = InprocNetwork::new();
    let here = side(&network, any_tcp(), ProcId::unique("here")).await;
    let there = side(&network, any_tcp(), ProcId::unique("there")).await;
    let (sink, seen) = spawn_sink(&there, Mailbox::default());
    let good: ActorRef<Sink> = timeout(WAIT, here.proc.lookup_remote(&there.addr(), "sink"))
        .await
        .unwrap()
        .unwrap();
    let confused: ActorRef<Confused> = here.proc.remote_ref(plexus_core::RemoteAddr {
        actor: sink.id().clone(),
        location: there.server.location().clone(),
    });
    assert_eq!(timeout(WAIT, good.ask(Echo(1))).await.unwrap().unwrap(), 2);

    for round in 0..3u64 {
        good.tell(Note(round)).await.unwrap();
        let error = timeout(WAIT, confused.ask(Misshapen))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(error, AskError::Decode { .. }), "{error:?}");
        let error = timeout(WAIT, confused.ask(Unknown(round)))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(error, AskError::Unhandled { .. }), "{error:?}");
        assert_eq!(
            timeout(WAIT, good.ask(Echo(round))).await.unwrap().unwrap(),
            round + 1
        );
    }
    eventually("the tells between the bad asks", || {
        seen.lock().unwrap().len() == 3
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    assert!(sink.is_alive());
}

/// Promise 3.7: a remote watch fires exactly once, and only after every message the
/// watched actor told the watcher before it stopped has been handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_watch_fires_after_the_watched_actors_earlier_tells() {
    let network = InprocNetwork::new();
    let here = side(&network, any_tcp(), ProcId::unique("here")).await;
    let there = side(&network, any_tcp(), ProcId::unique("there")).await;
    for round in 0..3u64 {
        let talker = there
            .proc
            .spawn(&format!("talker-{round}"), Talker)
            .unwrap();
        there.proc.expose_remote(&talker).unwrap();
        let remote: ActorRef<Talker> = timeout(
            WAIT,
            here.proc
                .lookup_remote(&there.addr(), &format!("talker-{round}")),
        )
        .await
        .unwrap()
        .unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let listener = here
            .proc
            .spawn(
                &format!("listener-{round}"),
                Listener {
                    heard: heard.clone(),
                },
            )
            .unwrap();
        here.proc.expose_remote(&listener).unwrap();
        listener.tell(WatchTalker(remote.clone())).await.unwrap();
        eventually("the watch to register", || {
            here.proc.remote_watch_count() >= 1
        })
        .await;

        const COUNT: u64 = 2_000;
        remote
            .tell(TalkThenStop {
                to: listener.clone(),
                count: COUNT,
            })
            .await
            .unwrap();
        eventually("the notice", || {
            heard
                .lock()
                .unwrap()
                .iter()
                .any(|h| matches!(h, Heard::Died(_)))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let heard = heard.lock().unwrap().clone();
        let mut expected: Vec<Heard> = (0..COUNT).map(Heard::Note).collect();
        expected.push(Heard::Died(StopReason::Normal));
        assert_eq!(heard.len(), expected.len(), "round {round}");
        assert!(heard == expected, "round {round}: notice out of order");
    }
}

/// Promise 3.7: a remote watch whose connection closes fires once with `Disconnected`;
/// when the connection is opened again and the watched actor then stops, nothing fires
/// a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_watch_fires_once_across_a_closed_connection() {
    let network = InprocNetwork::new();
    let here = side(&network, any_tcp(), ProcId::unique("here")).await;
    let there = side(&network, any_tcp(), ProcId::unique("there")).await;
    let talker = there.proc.spawn("talker", Talker).unwrap();
    there.proc.expose_remote(&talker).unwrap();
    let remote: ActorRef<Talker> = timeout(WAIT, here.proc.lookup_remote(&there.addr(), "talker"))
        .await
        .unwrap()
        .unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let listener = here
        .proc
        .spawn(
            "listener",
            Listener {
                heard: heard.clone(),
            },
        )
        .unwrap();
    here.proc.expose_remote(&listener).unwrap();
    listener.tell(WatchTalker(remote.clone())).await.unwrap();
    eventually("the watch to register", || {
        here.proc.remote_watch_count() == 1
    })
    .await;

    let manager = here.gateway.transport().unwrap();
    assert!(manager.close_transport(&plexus_transport::Dest::new(
        there.server.location().clone()
    )));
    eventually("the notice", || !heard.lock().unwrap().is_empty()).await;
    assert_eq!(
        *heard.lock().unwrap(),
        vec![Heard::Died(StopReason::Disconnected)]
    );

    // A new connection, then the real stop: its notice finds no watch left.
    let (sink, _) = spawn_sink(&there, Mailbox::default());
    let sink_ref: ActorRef<Sink> = timeout(WAIT, here.proc.lookup_remote(&there.addr(), "sink"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        timeout(WAIT, sink_ref.ask(Echo(1))).await.unwrap().unwrap(),
        2
    );
    talker.stop();
    timeout(WAIT, talker.wait_for_stop()).await.unwrap();
    // The stop notice, had it been sent, travels ahead of this ask's reply.
    assert_eq!(
        timeout(WAIT, sink_ref.ask(Echo(2))).await.unwrap().unwrap(),
        3
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        heard.lock().unwrap().len(),
        1,
        "{:?}",
        heard.lock().unwrap()
    );
    assert_eq!(here.proc.remote_watch_count(), 0);
    drop(sink);
}

/// Promise 3.8: a proc restarted at the same TCP location is a new incarnation (same
/// label, new instance). Refs bound to the old one get a typed error, never the new
/// actors, and tells through them are reported, not delivered to the successor. The
/// gateway answers an ask for a proc it does not attach with `NotFound` (the old
/// incarnation is an unknown proc there), as the design names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proc_restarted_at_the_same_location_is_not_reached_by_old_refs() {
    restarted_proc_is_not_reached_by_old_refs(ProcId::new("svc", 2)).await;
}

/// Promise 3.8 when the restarted proc takes the very same id, as a service restarted
/// under its configured name does: the new launch's actors get indices the old refs do
/// not carry, so the stale refs get `NotFound` (or `Disconnected`) instead of reaching
/// the new sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proc_restarted_under_the_same_id_is_not_reached_by_old_refs() {
    restarted_proc_is_not_reached_by_old_refs(ProcId::new("svc", 1)).await;
}

/// Serves proc `svc#1` with a sink, takes a ref to it, replaces the whole side with a
/// new gateway serving the same location and a proc `restarted`, and checks that the old
/// ref never reaches the new sink.
async fn restarted_proc_is_not_reached_by_old_refs(restarted: ProcId) {
    let network = InprocNetwork::new();
    let here = side(&network, any_tcp(), ProcId::unique("here")).await;
    let first = side(&network, any_tcp(), ProcId::new("svc", 1)).await;
    let location = first.server.location().clone();
    let (_old_sink, _old_seen) = spawn_sink(&first, Mailbox::default());
    let old: ActorRef<Sink> = timeout(WAIT, here.proc.lookup_remote(&first.addr(), "sink"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(timeout(WAIT, old.ask(Echo(1))).await.unwrap().unwrap(), 2);

    // The old incarnation goes, gateway and all; a new one serves the same address.
    drop(first);
    let second = timeout(WAIT, async {
        loop {
            let gateway = networked(&network);
            if let Ok(server) = gateway.serve(location.clone()).await {
                let proc = Proc::new(restarted.clone());
                let attachment = gateway.attach(&proc).unwrap();
                break Side {
                    gateway,
                    server,
                    proc,
                    _attachment: attachment,
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the location to be served again");
    assert_eq!(second.server.location(), &location);
    let (_new_sink, new_seen) = spawn_sink(&second, Mailbox::default());
    // The connection to the old incarnation may not be known dead yet: a lookup sent on
    // it fails `Disconnected` (as every ask in flight on a dying connection does), and
    // the next one dials the new incarnation.
    let fresh: ActorRef<Sink> = timeout(WAIT, async {
        loop {
            match here.proc.lookup_remote(&second.addr(), "sink").await {
                Ok(fresh) => break fresh,
                Err(AskError::Disconnected { .. }) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(other) => panic!("the lookup of the new sink failed: {other:?}"),
            }
        }
    })
    .await
    .expect("the new sink to be found");
    assert_eq!(timeout(WAIT, fresh.ask(Echo(5))).await.unwrap().unwrap(), 6);

    for n in 0..5u64 {
        let error = timeout(WAIT, old.ask(Echo(n)))
            .await
            .expect("a stale ask ends before its bound")
            .unwrap_err();
        assert!(
            matches!(
                error,
                AskError::NotFound { .. } | AskError::Disconnected { .. }
            ),
            "stale ask {n}: {error:?}"
        );
    }
    let before = here.proc.undeliverable_count();
    let relay = here.proc.spawn("relay", Relay).unwrap();
    relay.tell(Forward(old.clone(), 99)).await.unwrap();
    eventually("the stale tell to be reported", || {
        here.proc.undeliverable_count() > before
    })
    .await;
    // A later ask on the fresh ref is handled after anything the stale tell could have
    // become; the new sink saw none of it.
    assert_eq!(timeout(WAIT, fresh.ask(Echo(7))).await.unwrap().unwrap(), 8);
    assert!(new_seen.lock().unwrap().is_empty());
}
