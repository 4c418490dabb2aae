//! Remote refs between procs of one process, joined by `Net`: a real `RemoteRoute` that
//! encodes on one side and calls the other proc's `deliver_remote` on the other, as a
//! gateway does between procs it has attached. Promises 3.2 (ask outcomes), 3.5
//! (undeliverable), 3.7 (remote watches fire once, also on disconnect).

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_core::{
    Actor, ActorId, ActorRef, AskError, Context, Handler, LinkDied, LinkKind, Location, Mailbox,
    Proc, ProcId, RemoteActor, RemoteAddr, RemoteHandlers, RemoteMessage, StopReason, TellError,
    TryTellError, UndeliverableReason,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::common::within;
use crate::net::{Link, Net, addr};

// ---------------------------------------------------------------------------------------
// Actors and messages.

/// Counts and records what it is sent; answers asks; can panic, stall or fail.
#[derive(Default)]
struct Counter {
    total: u64,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Actor for Counter {}

#[derive(Serialize, Deserialize)]
struct Add(u64);
impl RemoteMessage for Add {
    const NAME: &'static str = "test.Add";
}
impl Handler<Add> for Counter {
    type Reply = u64;
    async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> u64 {
        self.total += n;
        self.total
    }
}

#[derive(Serialize, Deserialize)]
struct Note(u64);
impl RemoteMessage for Note {
    const NAME: &'static str = "test.Note";
}
impl Handler<Note> for Counter {
    type Reply = ();
    async fn handle(&mut self, Note(n): Note, _ctx: &mut Context<Self>) {
        self.seen.lock().unwrap().push(n);
    }
}

#[derive(Serialize, Deserialize)]
struct Boom;
impl RemoteMessage for Boom {
    const NAME: &'static str = "test.Boom";
}
impl Handler<Boom> for Counter {
    type Reply = u64;
    async fn handle(&mut self, _: Boom, _ctx: &mut Context<Self>) -> u64 {
        panic!("boom requested");
    }
}

#[derive(Serialize, Deserialize)]
struct Stall(u64);
impl RemoteMessage for Stall {
    const NAME: &'static str = "test.Stall";
}
impl Handler<Stall> for Counter {
    type Reply = ();
    async fn handle(&mut self, Stall(ms): Stall, _ctx: &mut Context<Self>) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[derive(Serialize, Deserialize)]
struct Fail;
impl RemoteMessage for Fail {
    const NAME: &'static str = "test.Fail";
}
impl Handler<Fail> for Counter {
    type Reply = ();
    async fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        ctx.fail("failure requested");
    }
}

/// Carries a ref; the counter greets it back through that ref.
#[derive(Serialize, Deserialize)]
struct Hello {
    reply_to: ActorRef<Collector>,
}
impl RemoteMessage for Hello {
    const NAME: &'static str = "test.Hello";
}
impl Handler<Hello> for Counter {
    type Reply = ();
    async fn handle(&mut self, Hello { reply_to }: Hello, ctx: &mut Context<Self>) {
        let greeting = Greeting {
            from: ctx.id().clone(),
            via_remote: reply_to.is_remote(),
        };
        reply_to.tell(greeting).await.unwrap();
    }
}

/// Answers with the ref it was given: a ref inside a reply.
#[derive(Serialize, Deserialize)]
struct Echo(ActorRef<Collector>);
impl RemoteMessage for Echo {
    const NAME: &'static str = "test.Echo";
}
impl Handler<Echo> for Counter {
    type Reply = ActorRef<Collector>;
    async fn handle(&mut self, Echo(collector): Echo, _ctx: &mut Context<Self>) -> Self::Reply {
        collector
    }
}

/// Handled locally, never registered as remote.
struct Secret;
impl Handler<Secret> for Counter {
    type Reply = ();
    async fn handle(&mut self, _: Secret, _ctx: &mut Context<Self>) {}
}

/// Blocks the actor until released: a local message, to hold a remote mailbox full.
struct Block(oneshot::Sender<()>, oneshot::Receiver<()>);
impl Handler<Block> for Counter {
    type Reply = ();
    async fn handle(&mut self, Block(started, release): Block, _ctx: &mut Context<Self>) {
        let _ = started.send(());
        let _ = release.await;
    }
}

impl RemoteActor for Counter {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new()
            .ask::<Add>()
            .tell::<Note>()
            .ask::<Boom>()
            .ask::<Stall>()
            .tell::<Fail>()
            .tell::<Hello>()
            .ask::<Echo>()
    }
}

/// Receives greetings.
#[derive(Default)]
struct Collector {
    greetings: Arc<Mutex<Vec<Greeting>>>,
}
impl Actor for Collector {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Greeting {
    from: ActorId,
    via_remote: bool,
}
impl RemoteMessage for Greeting {
    const NAME: &'static str = "test.Greeting";
}
impl Handler<Greeting> for Collector {
    type Reply = ();
    async fn handle(&mut self, greeting: Greeting, _ctx: &mut Context<Self>) {
        self.greetings.lock().unwrap().push(greeting);
    }
}
impl RemoteActor for Collector {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Greeting>()
    }
}

/// Watches or links the refs it is given and records every notice.
#[derive(Default)]
struct Watcher {
    died: Arc<Mutex<Vec<LinkDied>>>,
}

impl Actor for Watcher {
    async fn on_link_died(
        &mut self,
        _ctx: &mut Context<Self>,
        died: LinkDied,
    ) -> ControlFlow<StopReason> {
        let abnormal_link = died.kind == LinkKind::Link && died.reason.is_abnormal();
        let reason = StopReason::LinkDied {
            id: died.id.clone(),
            reason: Box::new(died.reason.clone()),
        };
        self.died.lock().unwrap().push(died);
        if abnormal_link {
            ControlFlow::Break(reason)
        } else {
            ControlFlow::Continue(())
        }
    }
}

struct WatchIt(ActorRef<Counter>);
impl Handler<WatchIt> for Watcher {
    type Reply = ();
    async fn handle(&mut self, WatchIt(target): WatchIt, ctx: &mut Context<Self>) {
        ctx.watch(&target);
    }
}

struct LinkIt(ActorRef<Counter>);
impl Handler<LinkIt> for Watcher {
    type Reply = ();
    async fn handle(&mut self, LinkIt(target): LinkIt, ctx: &mut Context<Self>) {
        ctx.link(&target);
    }
}

struct FailNow;
impl Handler<FailNow> for Watcher {
    type Reply = ();
    async fn handle(&mut self, _: FailNow, ctx: &mut Context<Self>) {
        ctx.fail("watcher failed on purpose");
    }
}

/// Polls `condition` until it holds, failing with `what` after 10 seconds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Two procs, A at `local:1` and B at `local:2`, and an exposed counter on B, seen from A.
struct Pair {
    net: Arc<Net>,
    a: Proc,
    b: Proc,
    counter: ActorRef<Counter>,
    seen: Arc<Mutex<Vec<u64>>>,
    remote: ActorRef<Counter>,
}

async fn pair(mailbox: Mailbox) -> Pair {
    let net = Arc::new(Net::default());
    let a = net.proc("a", 1);
    let b = net.proc("b", 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let counter = b
        .spawn_with(
            "counter",
            Counter {
                total: 0,
                seen: seen.clone(),
            },
            mailbox,
        )
        .unwrap();
    b.expose_remote(&counter).unwrap();
    let remote = within(
        "lookup",
        a.lookup_remote::<Counter>(&addr(&b, 2), "counter"),
    )
    .await
    .unwrap();
    Pair {
        net,
        a,
        b,
        counter,
        seen,
        remote,
    }
}

// ---------------------------------------------------------------------------------------
// Tell, try_tell, ask.

/// A remote lookup finds the exposed actor by name and the ref names that very actor.
#[tokio::test]
async fn lookup_finds_the_exposed_actor() {
    let p = pair(Mailbox::default()).await;
    assert!(p.remote.is_remote());
    assert_eq!(p.remote.id(), p.counter.id());
    assert_eq!(p.remote.mailbox().map(|gauge| gauge.depth()), None);
    assert_eq!(within("ask", p.remote.ask(Add(2))).await.unwrap(), 2);
}

/// Tells through a remote ref keep their order, also when the recipient's small mailbox
/// fills up and messages wait for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_tells_keep_their_order() {
    let p = pair(Mailbox::Bounded(4)).await;
    within("tells", async {
        for n in 0..500u64 {
            p.remote.tell(Note(n)).await.unwrap();
        }
    })
    .await;
    // An ask queued after the tells is answered after they are handled.
    within("ask after tells", p.remote.ask(Add(0)))
        .await
        .unwrap();
    assert_eq!(*p.seen.lock().unwrap(), (0..500).collect::<Vec<u64>>());
}

/// `try_tell` on a remote ref hands the message back as `Full` when the remote mailbox
/// has no room, and sends it when it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_try_tell_is_full_when_the_mailbox_is() {
    let p = pair(Mailbox::Bounded(1)).await;
    let (started, running) = oneshot::channel();
    let (release, blocked) = oneshot::channel();
    p.counter.tell(Block(started, blocked)).await.unwrap();
    within("the block to start", running).await.unwrap();

    p.remote.try_tell(Note(1)).unwrap();
    let full = p.remote.try_tell(Note(2)).unwrap_err();
    assert!(matches!(full, TryTellError::Full { .. }), "{full:?}");
    assert_eq!(full.into_message().map(|Note(n)| n), Some(2));

    release.send(()).unwrap();
    within("ask", p.remote.ask(Add(0))).await.unwrap();
    assert_eq!(*p.seen.lock().unwrap(), vec![1]);
}

/// A message type the actor does not register as remote fails with a typed error naming
/// the type, and goes to the sending proc's undeliverable handler.
#[tokio::test]
async fn unregistered_message_type_is_a_typed_error() {
    let p = pair(Mailbox::default()).await;
    let error = p.remote.tell(Secret).await.unwrap_err();
    match &error {
        TellError::NotRemote {
            recipient,
            message_type,
        } => {
            assert_eq!(recipient, p.counter.id());
            assert!(message_type.ends_with("Secret"), "{message_type}");
        }
        other => panic!("expected NotRemote, got {other:?}"),
    }
    assert_eq!(p.a.undeliverable_count(), 1);
    // A tell-only message cannot be asked remotely.
    let error = p.remote.ask(Note(1)).await.unwrap_err();
    assert!(matches!(error, AskError::NotRemote { .. }), "{error:?}");
    let error = p.remote.try_tell(Secret).unwrap_err();
    assert!(
        matches!(error, TryTellError::Remote(TellError::NotRemote { .. })),
        "{error:?}"
    );
}

/// Every way a remote ask can end without a reply is a typed error: no such actor, an
/// actor that is not exposed, a handler that panics, a timeout, a lost connection.
#[tokio::test]
async fn remote_ask_errors_are_typed() {
    let p = pair(Mailbox::default()).await;

    let ghost = p.a.remote_ref::<Counter>(RemoteAddr {
        actor: ActorId::new(p.b.id().clone(), "ghost", 0),
        location: Location::Local(2),
    });
    let error = within("ghost", ghost.ask(Add(1))).await.unwrap_err();
    assert!(matches!(error, AskError::NotFound { .. }), "{error:?}");

    let hidden = p.b.spawn("hidden", Counter::default()).unwrap();
    let error = within(
        "lookup hidden",
        p.a.lookup_remote::<Counter>(&addr(&p.b, 2), "hidden"),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, AskError::NotExposed { .. }), "{error:?}");
    let error = within(
        "lookup nobody",
        p.a.lookup_remote::<Counter>(&addr(&p.b, 2), "nobody"),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, AskError::NotFound { .. }), "{error:?}");
    let hidden_remote = p.a.remote_ref::<Counter>(RemoteAddr {
        actor: hidden.id().clone(),
        location: Location::Local(2),
    });
    let error = within("hidden", hidden_remote.ask(Add(1)))
        .await
        .unwrap_err();
    assert!(matches!(error, AskError::NotExposed { .. }), "{error:?}");

    let error = within("boom", p.remote.ask(Boom)).await.unwrap_err();
    match error {
        AskError::Panicked { recipient, message } => {
            assert_eq!(&recipient, p.counter.id());
            assert!(message.contains("boom requested"), "{message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }

    let respawned = p.b.spawn("counter2", Counter::default()).unwrap();
    p.b.expose_remote(&respawned).unwrap();
    let slow = p.a.remote_ref::<Counter>(RemoteAddr {
        actor: respawned.id().clone(),
        location: Location::Local(2),
    });
    let error = within(
        "timeout",
        slow.ask_timeout(Stall(5_000), Duration::from_millis(50)),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, AskError::Timeout { .. }), "{error:?}");

    p.net.set_down(&Location::Local(2), true);
    let error = within("down", p.remote.ask(Add(1))).await.unwrap_err();
    assert!(matches!(error, AskError::Disconnected { .. }), "{error:?}");
    let error = within("down tell", p.remote.tell(Note(1)))
        .await
        .unwrap_err();
    assert!(matches!(error, TellError::Disconnected { .. }), "{error:?}");
}

/// A remote tell that cannot be sent reaches the sending proc's undeliverable handler
/// with the message and the reason.
#[tokio::test]
async fn unsendable_remote_tell_is_reported_undeliverable() {
    let net = Arc::new(Net::default());
    let lost = Arc::new(Mutex::new(Vec::new()));
    let a = Proc::builder(ProcId::unique("a"))
        .on_undeliverable({
            let lost = lost.clone();
            move |undeliverable| {
                let note = undeliverable.message.downcast::<Note>().map(|note| note.0);
                lost.lock().unwrap().push((undeliverable.reason, note.ok()));
            }
        })
        .build();
    a.set_route(Some(Arc::new(Link {
        net: net.clone(),
        location: Location::Local(1),
    })));
    let nowhere = a.remote_ref::<Counter>(RemoteAddr {
        actor: ActorId::new(ProcId::new("gone", 9), "counter", 0),
        location: Location::Local(9),
    });
    let error = nowhere.tell(Note(7)).await.unwrap_err();
    assert!(matches!(error, TellError::Unroutable { .. }), "{error:?}");
    let lost = lost.lock().unwrap();
    assert_eq!(lost.len(), 1);
    assert!(matches!(
        lost[0],
        (
            UndeliverableReason::RemoteSendFailed(TellError::Unroutable { .. }),
            Some(7)
        )
    ));
}

// ---------------------------------------------------------------------------------------
// Refs inside messages.

/// A ref sent inside a message works on the receiving side: the receiver replies through
/// it, and the reply reaches the original actor.
#[tokio::test]
async fn ref_inside_a_message_is_usable_by_the_receiver() {
    let p = pair(Mailbox::default()).await;
    let greetings = Arc::new(Mutex::new(Vec::new()));
    let collector =
        p.a.spawn(
            "collector",
            Collector {
                greetings: greetings.clone(),
            },
        )
        .unwrap();
    p.a.expose_remote(&collector).unwrap();
    p.remote
        .tell(Hello {
            reply_to: collector.clone(),
        })
        .await
        .unwrap();
    eventually("the greeting", || !greetings.lock().unwrap().is_empty()).await;
    assert_eq!(
        *greetings.lock().unwrap(),
        vec![Greeting {
            from: p.counter.id().clone(),
            via_remote: true,
        }]
    );
    // The greeting was sent from the counter's handler, and says so; the hello was not.
    let sent = p.net.sent.lock().unwrap().clone();
    assert!(
        sent.contains(&("test.Greeting", Some(p.counter.id().clone()))),
        "{sent:?}"
    );
    assert!(sent.contains(&("test.Hello", None)), "{sent:?}");

    // A ref inside a reply resolves against the proc that asked: here, its own actor.
    let echoed = within("echo", p.remote.ask(Echo(collector.clone())))
        .await
        .unwrap();
    assert!(!echoed.is_remote());
    assert_eq!(echoed, collector);
}

/// A ref that points at the receiving proc itself resolves to the local actor, with no
/// route in between.
#[tokio::test]
async fn ref_to_the_receiving_proc_resolves_locally() {
    let p = pair(Mailbox::default()).await;
    let greetings = Arc::new(Mutex::new(Vec::new()));
    let collector =
        p.b.spawn(
            "collector",
            Collector {
                greetings: greetings.clone(),
            },
        )
        .unwrap();
    // Sent from A, as a ref A received earlier: a remote ref to B's collector.
    let remote_collector = p.a.remote_ref::<Collector>(RemoteAddr {
        actor: collector.id().clone(),
        location: Location::Local(2),
    });
    assert!(remote_collector.is_remote());
    p.remote
        .tell(Hello {
            reply_to: remote_collector,
        })
        .await
        .unwrap();
    eventually("the greeting", || !greetings.lock().unwrap().is_empty()).await;
    assert!(!greetings.lock().unwrap()[0].via_remote);
}

/// A proc with no route cannot hand out refs: serializing one of its refs is an error,
/// and so is decoding a ref outside of a decoding proc.
#[tokio::test]
async fn refs_need_a_route_to_serialize_and_a_proc_to_decode() {
    let isolated = Proc::new(ProcId::unique("isolated"));
    let collector = isolated.spawn("collector", Collector::default()).unwrap();
    assert!(postcard::to_allocvec(&collector).is_err());

    let p = pair(Mailbox::default()).await;
    let bytes = postcard::to_allocvec(&p.remote).unwrap();
    assert!(postcard::from_bytes::<ActorRef<Counter>>(&bytes).is_err());
    let decoded: ActorRef<Counter> = p.a.decoding(|| postcard::from_bytes(&bytes)).unwrap();
    assert_eq!(decoded, p.remote);
    let local: ActorRef<Counter> = p.b.decoding(|| postcard::from_bytes(&bytes)).unwrap();
    assert!(!local.is_remote());
    assert_eq!(local, p.counter);
}

// ---------------------------------------------------------------------------------------
// Stop, watch, link, disconnect.

/// A remote stop stops the actor, and a remote `wait_for_stop` returns its reason.
#[tokio::test]
async fn remote_stop_and_wait_for_stop() {
    let p = pair(Mailbox::default()).await;
    let waiting = tokio::spawn({
        let remote = p.remote.clone();
        async move { remote.wait_for_stop().await }
    });
    eventually("the watch to register", || p.a.remote_watch_count() == 1).await;
    p.remote.stop();
    assert_eq!(
        within("the local stop", p.counter.wait_for_stop()).await,
        StopReason::Stopped
    );
    assert_eq!(
        within("the remote wait", waiting).await.unwrap(),
        StopReason::Stopped
    );
    assert_eq!(p.a.remote_watch_count(), 0);
    // Watching an actor that is gone answers at once.
    assert_eq!(
        within("a late wait", p.remote.wait_for_stop()).await,
        StopReason::NotFound
    );
}

/// A remote watch fires once when the actor stops, with its reason, after the messages it
/// sent before; watching an unknown actor fires at once with `NotFound`.
#[tokio::test]
async fn remote_watch_fires_on_stop_with_the_reason() {
    let p = pair(Mailbox::default()).await;
    let died = Arc::new(Mutex::new(Vec::new()));
    let watcher =
        p.a.spawn("watcher", Watcher { died: died.clone() })
            .unwrap();
    watcher.tell(WatchIt(p.remote.clone())).await.unwrap();
    let ghost = p.a.remote_ref::<Counter>(RemoteAddr {
        actor: ActorId::new(p.b.id().clone(), "ghost", 0),
        location: Location::Local(2),
    });
    watcher.tell(WatchIt(ghost.clone())).await.unwrap();
    eventually("the ghost's notice", || died.lock().unwrap().len() == 1).await;
    assert_eq!(died.lock().unwrap()[0].reason, StopReason::NotFound);
    assert_eq!(died.lock().unwrap()[0].id, *ghost.id());

    eventually("the watch to register", || p.a.remote_watch_count() == 1).await;
    p.remote.tell(Fail).await.unwrap();
    eventually("the notice", || died.lock().unwrap().len() == 2).await;
    let notice = died.lock().unwrap()[1].clone();
    assert_eq!(notice.id, *p.counter.id());
    assert_eq!(notice.kind, LinkKind::Watch);
    assert_eq!(
        notice.reason,
        StopReason::Failed("failure requested".into())
    );
    // A lost peer afterwards fires nothing more.
    assert_eq!(p.a.peer_lost(&Location::Local(2)), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(died.lock().unwrap().len(), 2);
}

/// `peer_lost` fires a remote watch with `Disconnected`, exactly once: the target's real
/// stop notice that arrives later finds nothing to fire.
#[tokio::test]
async fn peer_lost_fires_disconnected_exactly_once() {
    let p = pair(Mailbox::default()).await;
    let died = Arc::new(Mutex::new(Vec::new()));
    let watcher =
        p.a.spawn("watcher", Watcher { died: died.clone() })
            .unwrap();
    watcher.tell(WatchIt(p.remote.clone())).await.unwrap();
    watcher.tell(WatchIt(p.remote.clone())).await.unwrap();
    eventually("the watches to register", || p.a.remote_watch_count() == 2).await;

    assert_eq!(p.a.peer_lost(&Location::Local(2)), 2);
    assert_eq!(p.a.peer_lost(&Location::Local(2)), 0);
    eventually("the notices", || died.lock().unwrap().len() == 2).await;
    for notice in died.lock().unwrap().iter() {
        assert_eq!(notice.reason, StopReason::Disconnected);
        assert_eq!(notice.id, *p.counter.id());
    }

    // The connection comes back and the target stops: its notices race in too late.
    p.counter.stop();
    within("the stop", p.counter.wait_for_stop()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(died.lock().unwrap().len(), 2);
    assert_eq!(p.a.remote_watch_count(), 0);
}

/// A remote link fires on both sides: an abnormal stop of the remote actor stops the
/// local one, and the reverse; a lost peer fires it with `Disconnected`.
#[tokio::test]
async fn remote_link_fires_both_ways_and_on_disconnect() {
    let p = pair(Mailbox::default()).await;

    // Remote side fails: the local linker stops with LinkDied.
    let died = Arc::new(Mutex::new(Vec::new()));
    let linker = p.a.spawn("linker", Watcher { died: died.clone() }).unwrap();
    linker.tell(LinkIt(p.remote.clone())).await.unwrap();
    eventually("the link to register", || p.a.remote_watch_count() == 1).await;
    eventually("the link-back to register", || {
        p.b.remote_watch_count() == 1
    })
    .await;
    p.remote.tell(Fail).await.unwrap();
    let reason = within("the linker's stop", linker.wait_for_stop()).await;
    assert_eq!(
        reason,
        StopReason::LinkDied {
            id: p.counter.id().clone(),
            reason: Box::new(StopReason::Failed("failure requested".into())),
        }
    );

    // Local side fails: the remote counter stops with LinkDied.
    let second = p.b.spawn("second", Counter::default()).unwrap();
    p.b.expose_remote(&second).unwrap();
    let second_remote = within(
        "lookup",
        p.a.lookup_remote::<Counter>(&addr(&p.b, 2), "second"),
    )
    .await
    .unwrap();
    let failing = p.a.spawn("failing", Watcher::default()).unwrap();
    failing.tell(LinkIt(second_remote)).await.unwrap();
    eventually("the link-back to register", || {
        p.b.remote_watch_count() == 1
    })
    .await;
    failing.tell(FailNow).await.unwrap();
    let reason = within("the remote stop", second.wait_for_stop()).await;
    assert!(
        matches!(&reason, StopReason::LinkDied { id, .. } if id == failing.id()),
        "{reason:?}"
    );

    // A lost peer fires the link with Disconnected, which stops the linker.
    let third = p.b.spawn("third", Counter::default()).unwrap();
    p.b.expose_remote(&third).unwrap();
    let third_remote = within(
        "lookup",
        p.a.lookup_remote::<Counter>(&addr(&p.b, 2), "third"),
    )
    .await
    .unwrap();
    let lonely = p.a.spawn("lonely", Watcher::default()).unwrap();
    lonely.tell(LinkIt(third_remote)).await.unwrap();
    eventually("the link to register", || p.a.remote_watch_count() == 1).await;
    p.net.set_down(&Location::Local(2), true);
    assert_eq!(p.a.peer_lost(&Location::Local(2)), 1);
    let reason = within("the lonely stop", lonely.wait_for_stop()).await;
    assert_eq!(
        reason,
        StopReason::LinkDied {
            id: third.id().clone(),
            reason: Box::new(StopReason::Disconnected),
        }
    );
    // And B, losing A, fires its link-back on `third` the same way.
    assert_eq!(p.b.peer_lost(&Location::Local(1)), 1);
    let reason = within("third's stop", third.wait_for_stop()).await;
    assert!(
        matches!(&reason, StopReason::LinkDied { reason, .. } if **reason == StopReason::Disconnected),
        "{reason:?}"
    );
}

/// Incarnations don't mix (promise 3.8): a ref to an actor that stopped does not reach the
/// new actor that took its name; its asks fail with `NotFound`.
#[tokio::test]
async fn refs_to_an_earlier_actor_do_not_reach_its_successor() {
    let p = pair(Mailbox::default()).await;
    p.counter.stop();
    within("the stop", p.counter.wait_for_stop()).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let successor =
        p.b.spawn(
            "counter",
            Counter {
                total: 0,
                seen: seen.clone(),
            },
        )
        .unwrap();
    p.b.expose_remote(&successor).unwrap();
    let error = within("stale ask", p.remote.ask(Add(1))).await.unwrap_err();
    assert!(matches!(error, AskError::NotFound { .. }), "{error:?}");
    p.remote.tell(Note(1)).await.unwrap();
    let fresh = within(
        "lookup",
        p.a.lookup_remote::<Counter>(&addr(&p.b, 2), "counter"),
    )
    .await
    .unwrap();
    assert_eq!(fresh.id(), successor.id());
    assert_eq!(within("fresh ask", fresh.ask(Add(3))).await.unwrap(), 3);
    assert!(seen.lock().unwrap().is_empty());
}

/// A table that uses the reserved system prefix is refused when exposed.
#[tokio::test]
async fn system_prefix_is_reserved() {
    #[derive(Serialize, Deserialize)]
    struct Sneaky;
    impl RemoteMessage for Sneaky {
        const NAME: &'static str = "$sys.Sneaky";
    }
    impl Handler<Sneaky> for Collector {
        type Reply = ();
        async fn handle(&mut self, _: Sneaky, _ctx: &mut Context<Self>) {}
    }
    let proc = Proc::new(ProcId::unique("reserved"));
    let collector = proc.spawn("collector", Collector::default()).unwrap();
    let refused = proc.expose(&collector, RemoteHandlers::new().tell::<Sneaky>());
    assert!(
        matches!(refused, Err(plexus_core::ExposeError::ReservedName { .. })),
        "{refused:?}"
    );
}

/// A `wait_for_stop` on a remote ref that is given up leaves no watch behind.
#[tokio::test]
async fn cancelled_remote_wait_leaves_no_watch() {
    let p = pair(Mailbox::default()).await;
    let gave_up = tokio::time::timeout(Duration::from_millis(20), p.remote.wait_for_stop()).await;
    assert!(gave_up.is_err(), "the counter is still running");
    assert_eq!(p.a.remote_watch_count(), 0);
}

/// A proc with no route cannot watch a remote actor: the watch fires at once with
/// `Disconnected`, and sends fail with `Unroutable`.
#[tokio::test]
async fn without_a_route_remote_watches_fire_disconnected() {
    let proc = Proc::new(ProcId::unique("isolated"));
    let target = proc.remote_ref::<Counter>(RemoteAddr {
        actor: ActorId::new(ProcId::new("far", 1), "counter", 0),
        location: Location::Local(5),
    });
    let died = Arc::new(Mutex::new(Vec::new()));
    let watcher = proc
        .spawn("watcher", Watcher { died: died.clone() })
        .unwrap();
    watcher.tell(WatchIt(target.clone())).await.unwrap();
    eventually("the notice", || !died.lock().unwrap().is_empty()).await;
    assert_eq!(died.lock().unwrap()[0].reason, StopReason::Disconnected);
    assert_eq!(
        within("wait", target.wait_for_stop()).await,
        StopReason::Disconnected
    );
    let error = target.ask(Add(1)).await.unwrap_err();
    assert!(matches!(error, AskError::Unroutable { .. }), "{error:?}");
    assert_eq!(proc.remote_watch_count(), 0);
}

/// Detaching a proc from its route fires its remote watches with `Disconnected`: no
/// notice can reach it any more.
#[tokio::test]
async fn detaching_fires_remote_watches() {
    let p = pair(Mailbox::default()).await;
    let died = Arc::new(Mutex::new(Vec::new()));
    let watcher =
        p.a.spawn("watcher", Watcher { died: died.clone() })
            .unwrap();
    watcher.tell(WatchIt(p.remote.clone())).await.unwrap();
    eventually("the watch to register", || p.a.remote_watch_count() == 1).await;
    p.a.set_route(None);
    eventually("the notice", || !died.lock().unwrap().is_empty()).await;
    assert_eq!(died.lock().unwrap()[0].reason, StopReason::Disconnected);
    assert_eq!(p.a.remote_watch_count(), 0);
    let error = within("ask", p.remote.ask(Add(1))).await.unwrap_err();
    assert!(matches!(error, AskError::Unroutable { .. }), "{error:?}");
}
