//! Remote dispatch: envelopes delivered by actor name and message name reach the typed
//! handler, fail with typed errors, never wait on a full mailbox, and keep their order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexus_core::{
    Actor, ActorRef, Context, DeliveryError, ExposeError, Handler, Mailbox, Proc, ProcId,
    RemoteAskError, RemoteHandlers, RemoteMessage, RemoteReply,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::common::within;

/// Records the numbers it is told; can be held in a handler until released.
#[derive(Default)]
struct Ledger {
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Actor for Ledger {}

#[derive(Serialize, Deserialize)]
struct Entry(u64);

impl RemoteMessage for Entry {
    const NAME: &'static str = "ledger.Entry";
}

impl Handler<Entry> for Ledger {
    type Reply = ();
    async fn handle(&mut self, Entry(n): Entry, _ctx: &mut Context<Self>) {
        self.seen.lock().unwrap().push(n);
    }
}

#[derive(Serialize, Deserialize)]
struct Total;

impl RemoteMessage for Total {
    const NAME: &'static str = "ledger.Total";
}

impl Handler<Total> for Ledger {
    type Reply = u64;
    async fn handle(&mut self, _: Total, _ctx: &mut Context<Self>) -> u64 {
        self.seen.lock().unwrap().iter().sum()
    }
}

/// A different type that claims the same wire name as `Entry`.
#[derive(Serialize, Deserialize)]
struct Impostor(String);

impl RemoteMessage for Impostor {
    const NAME: &'static str = "ledger.Entry";
}

impl Handler<Impostor> for Ledger {
    type Reply = ();
    async fn handle(&mut self, _: Impostor, _ctx: &mut Context<Self>) {}
}

/// Panics in its handler, to check what a remote asker hears.
#[derive(Serialize, Deserialize)]
struct Boom;

impl RemoteMessage for Boom {
    const NAME: &'static str = "ledger.Boom";
}

impl Handler<Boom> for Ledger {
    type Reply = u64;
    async fn handle(&mut self, _: Boom, _ctx: &mut Context<Self>) -> u64 {
        panic!("the ledger does not balance")
    }
}

/// Local only: holds the actor in its handler until the sender is fired or dropped.
struct Hold(oneshot::Receiver<()>);

impl Handler<Hold> for Ledger {
    type Reply = ();
    async fn handle(&mut self, Hold(release): Hold, _ctx: &mut Context<Self>) {
        let _ = release.await;
    }
}

fn handlers() -> RemoteHandlers<Ledger> {
    RemoteHandlers::new()
        .tell::<Entry>()
        .ask::<Total>()
        .ask::<Boom>()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap()
}

/// A reply callback and the channel its one outcome arrives on.
fn reply_channel() -> (
    RemoteReply,
    oneshot::Receiver<Result<Vec<u8>, RemoteAskError>>,
) {
    let (tx, rx) = oneshot::channel();
    let reply: RemoteReply = Box::new(move |outcome| {
        let _ = tx.send(outcome);
    });
    (reply, rx)
}

/// Holds the actor in a handler with its mailbox empty; firing the sender releases it.
async fn hold(actor: &ActorRef<Ledger>) -> oneshot::Sender<()> {
    let (release, hold) = oneshot::channel();
    actor.tell(Hold(hold)).await.unwrap();
    within("the actor to enter its handler", async {
        while actor.mailbox().unwrap().depth() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    release
}

/// An exposed actor handles a tell delivered by name, and an ask's reply comes back
/// encoded and decodes to what the handler returned.
#[tokio::test]
async fn exposed_actor_handles_remote_tell_and_answers_remote_ask() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let ledger = Ledger::default();
    let seen = ledger.seen.clone();
    let actor = proc.spawn("ledger", ledger).unwrap();
    proc.expose(&actor, handlers()).unwrap();

    proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(40)), None)
        .unwrap();
    proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(2)), None)
        .unwrap();
    let (reply, answer) = reply_channel();
    proc.deliver_remote("ledger", Total::NAME, &encode(&Total), Some(reply))
        .unwrap();

    let encoded = within("the ask's reply", answer).await.unwrap().unwrap();
    assert_eq!(postcard::from_bytes::<u64>(&encoded).unwrap(), 42);
    assert_eq!(*seen.lock().unwrap(), vec![40, 2]);
}

/// An unknown actor, an actor without exposure, an unknown message name and a payload that
/// does not decode each fail with their own typed error.
#[tokio::test]
async fn each_bad_envelope_fails_with_its_typed_error() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let exposed = proc.spawn("ledger", Ledger::default()).unwrap();
    proc.expose(&exposed, handlers()).unwrap();
    proc.spawn("private", Ledger::default()).unwrap();
    let entry = encode(&Entry(1));

    let missing = proc.deliver_remote("nobody", Entry::NAME, &entry, None);
    assert!(
        matches!(&missing, Err(DeliveryError::NotFound { actor }) if actor == "nobody"),
        "{missing:?}"
    );
    let private = proc.deliver_remote("private", Entry::NAME, &entry, None);
    assert!(
        matches!(&private, Err(DeliveryError::NotExposed { actor }) if actor == "private"),
        "{private:?}"
    );
    let unknown = proc.deliver_remote("ledger", "ledger.Rotate", &entry, None);
    assert!(
        matches!(&unknown, Err(DeliveryError::UnknownMessage { actor, message })
            if actor == "ledger" && message == "ledger.Rotate"),
        "{unknown:?}"
    );
    // A lone 0xFF is not a valid varint, so no `u64` decodes from it.
    let garbled = proc.deliver_remote("ledger", Entry::NAME, &[0xFF], None);
    assert!(
        matches!(&garbled, Err(DeliveryError::Decode { message, .. }) if *message == Entry::NAME),
        "{garbled:?}"
    );
    assert_eq!(
        exposed.ask(Total).await.unwrap(),
        0,
        "a bad envelope was handled"
    );
}

/// An ask whose payload does not decode gets its reply called with the decode error, and
/// so does an ask for an actor that does not exist.
#[tokio::test]
async fn undecodable_ask_is_answered_with_the_decode_error() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let actor = proc.spawn("ledger", Ledger::default()).unwrap();
    proc.expose(&actor, RemoteHandlers::new().ask::<Entry>())
        .unwrap();

    // An empty payload cannot hold the `u64` of an `Entry`.
    let (reply, answer) = reply_channel();
    let result = proc.deliver_remote("ledger", Entry::NAME, &[], Some(reply));
    assert!(
        matches!(result, Err(DeliveryError::Decode { .. })),
        "{result:?}"
    );
    let outcome = within("the decode error", answer).await.unwrap();
    assert!(
        matches!(&outcome, Err(RemoteAskError::Decode { message, .. }) if message == Entry::NAME),
        "{outcome:?}"
    );

    let (reply, answer) = reply_channel();
    let result = proc.deliver_remote("nobody", Total::NAME, &[], Some(reply));
    assert!(
        matches!(result, Err(DeliveryError::NotFound { .. })),
        "{result:?}"
    );
    let outcome = within("the not-found answer", answer).await.unwrap();
    assert_eq!(
        outcome,
        Err(RemoteAskError::NotFound {
            actor: "nobody".to_owned()
        })
    );
}

/// A full mailbox returns `Full` at once while the actor is held in a handler; pushing the
/// pending message once there is room, then delivering more, keeps the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mailbox_returns_full_without_blocking_and_retry_keeps_order() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let ledger = Ledger::default();
    let seen = ledger.seen.clone();
    let actor = proc
        .spawn_with("ledger", ledger, Mailbox::Bounded(2))
        .unwrap();
    proc.expose(&actor, handlers()).unwrap();

    let release = hold(&actor).await;

    for n in [1, 2] {
        proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(n)), None)
            .unwrap();
    }
    let started = Instant::now();
    let full = proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(3)), None);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "a full mailbox made delivery wait"
    );
    let pending = match full {
        Err(DeliveryError::Full { pending }) => *pending,
        other => panic!("expected Full, got {other:?}"),
    };
    assert_eq!(pending.actor(), actor.id());
    assert_eq!(pending.message_name(), Entry::NAME);

    // Still full: a retry that must not wait hands the message back again.
    let pending = pending.try_deliver().unwrap_err().into_pending().unwrap();

    // The flow's pusher waits for room while the actor is released.
    let pusher = tokio::spawn(pending.deliver());
    release.send(()).unwrap();
    within("the pending message to be pushed", pusher)
        .await
        .unwrap()
        .unwrap();
    proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(4)), None)
        .unwrap();

    assert_eq!(actor.ask(Total).await.unwrap(), 10);
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3, 4]);
}

/// A full mailbox refuses an ask with `Full` too; the pending ask, once pushed, is
/// answered through the original reply callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mailbox_pending_ask_is_answered_after_push() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let actor = proc
        .spawn_with("ledger", Ledger::default(), Mailbox::Bounded(1))
        .unwrap();
    proc.expose(&actor, handlers()).unwrap();

    let release = hold(&actor).await;
    proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(7)), None)
        .unwrap();

    let (reply, answer) = reply_channel();
    let full = proc.deliver_remote("ledger", Total::NAME, &encode(&Total), Some(reply));
    let pending = match full {
        Err(DeliveryError::Full { pending }) => *pending,
        other => panic!("expected Full, got {other:?}"),
    };
    let pusher = tokio::spawn(pending.deliver());
    release.send(()).unwrap();
    within("the pending ask to be pushed", pusher)
        .await
        .unwrap()
        .unwrap();
    let encoded = within("the pending ask's reply", answer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(postcard::from_bytes::<u64>(&encoded).unwrap(), 7);
}

/// Dropping a pending ask answers its reply with `Abandoned`, so the requester never
/// waits for a reply that cannot come.
#[tokio::test]
async fn dropped_pending_ask_is_answered_abandoned() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let actor = proc
        .spawn_with("ledger", Ledger::default(), Mailbox::Bounded(1))
        .unwrap();
    proc.expose(&actor, handlers()).unwrap();
    // The actor's task has not run yet on this single thread, so one tell fills it.
    proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(1)), None)
        .unwrap();

    let (reply, answer) = reply_channel();
    let full = proc.deliver_remote("ledger", Total::NAME, &encode(&Total), Some(reply));
    assert!(matches!(full, Err(DeliveryError::Full { .. })), "{full:?}");
    drop(full);
    let outcome = within("the abandoned answer", answer).await.unwrap();
    assert_eq!(outcome, Err(RemoteAskError::Abandoned));
}

/// Two different types registered under one wire name for one actor are refused when the
/// table is attached, and the actor stays unexposed.
#[tokio::test]
async fn two_types_under_one_name_are_refused_at_registration() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let actor = proc.spawn("ledger", Ledger::default()).unwrap();

    let clash = proc.expose(
        &actor,
        RemoteHandlers::new().tell::<Entry>().tell::<Impostor>(),
    );
    match clash {
        Err(ExposeError::DuplicateName {
            message,
            first,
            second,
        }) => {
            assert_eq!(message, "ledger.Entry");
            assert!(first.ends_with("Entry"), "{first}");
            assert!(second.ends_with("Impostor"), "{second}");
        }
        other => panic!("expected DuplicateName, got {other:?}"),
    }
    let after = proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(1)), None);
    assert!(
        matches!(after, Err(DeliveryError::NotExposed { .. })),
        "{after:?}"
    );

    // The same type twice is not a clash.
    proc.expose(
        &actor,
        RemoteHandlers::new().tell::<Entry>().tell::<Entry>(),
    )
    .unwrap();
}

/// An exposure ends with its actor: a stopped actor's name is `NotFound`, and a new actor
/// under that name does not inherit the old table.
#[tokio::test]
async fn exposure_ends_when_the_actor_stops() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let actor = proc.spawn("ledger", Ledger::default()).unwrap();
    proc.expose(&actor, handlers()).unwrap();
    actor.stop();
    within("the actor to stop", actor.wait_for_stop()).await;

    let gone = proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(1)), None);
    assert!(
        matches!(gone, Err(DeliveryError::NotFound { .. })),
        "{gone:?}"
    );

    let successor = proc.spawn("ledger", Ledger::default()).unwrap();
    let inherited = proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(1)), None);
    assert!(
        matches!(inherited, Err(DeliveryError::NotExposed { .. })),
        "{inherited:?}"
    );
    proc.expose(&successor, handlers()).unwrap();
    proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(1)), None)
        .unwrap();
}

/// 1,000 tells delivered one after another through `deliver_remote` are handled in order;
/// `Full` ones are pushed before the next envelope, as a flow's pusher would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_remote_tells_are_handled_in_order() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let ledger = Ledger::default();
    let seen = ledger.seen.clone();
    let actor = proc
        .spawn_with("ledger", ledger, Mailbox::Bounded(16))
        .unwrap();
    proc.expose(&actor, handlers()).unwrap();

    within("1,000 deliveries", async {
        for n in 0..1_000u64 {
            match proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(n)), None) {
                Ok(()) => {}
                Err(DeliveryError::Full { pending }) => pending.deliver().await.unwrap(),
                Err(other) => panic!("delivery {n} failed: {other}"),
            }
        }
    })
    .await;

    let total = within("the total", actor.ask(Total)).await.unwrap();
    assert_eq!(total, (0..1_000u64).sum::<u64>());
    assert_eq!(*seen.lock().unwrap(), (0..1_000u64).collect::<Vec<_>>());
}

/// An ask for a message registered only as a tell is refused with `NotAskable`, and its
/// reply is answered instead of left waiting.
#[tokio::test]
async fn ask_for_a_tell_only_message_is_refused_and_answered() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let actor = proc.spawn("ledger", Ledger::default()).unwrap();
    proc.expose(&actor, handlers()).unwrap();

    let (reply, answer) = reply_channel();
    let result = proc.deliver_remote("ledger", Entry::NAME, &encode(&Entry(1)), Some(reply));
    assert!(
        matches!(&result, Err(DeliveryError::NotAskable { message, .. }) if message == Entry::NAME),
        "{result:?}"
    );
    let outcome = within("the refusal", answer).await.unwrap();
    assert!(
        matches!(outcome, Err(RemoteAskError::UnknownMessage { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        actor.ask(Total).await.unwrap(),
        0,
        "the refused ask was handled"
    );
}

/// A handler that panics on a remote ask answers the reply with `Panicked`.
#[tokio::test]
async fn panicking_remote_ask_is_answered_panicked() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let actor = proc.spawn("ledger", Ledger::default()).unwrap();
    proc.expose(&actor, handlers()).unwrap();

    let (reply, answer) = reply_channel();
    proc.deliver_remote("ledger", Boom::NAME, &encode(&Boom), Some(reply))
        .unwrap();
    let outcome = within("the panic answer", answer).await.unwrap();
    match outcome {
        Err(RemoteAskError::Panicked { actor: id, message }) => {
            assert_eq!(&id, actor.id());
            assert!(message.contains("does not balance"), "{message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}
