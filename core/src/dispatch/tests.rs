//! The promises of a remote ask answered by the actor's own task: one outcome per ask on
//! every path (reply, panic, stop with the ask queued, a stopped actor, runtime torn
//! down), and a reply
//! callback that cannot harm the actor that calls it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Actor, ActorRef, Context, Handler, Proc, ProcId, RemoteAskError, RemoteHandlers, RemoteMessage,
    RemoteReply,
};

/// Echoes asks, can panic on request, and can be held in a handler until released.
struct Echo {
    /// The task id of the last handler run, to compare with the reply callback's.
    handler_task: Arc<Mutex<Option<tokio::task::Id>>>,
}

impl Actor for Echo {}

#[derive(Serialize, Deserialize)]
struct Ping(u64);

impl RemoteMessage for Ping {
    const NAME: &'static str = "echo.Ping";
}

impl Handler<Ping> for Echo {
    type Reply = u64;
    async fn handle(&mut self, Ping(n): Ping, _ctx: &mut Context<Self>) -> u64 {
        *self.handler_task.lock().unwrap() = tokio::task::try_id();
        n
    }
}

#[derive(Serialize, Deserialize)]
struct Crash;

impl RemoteMessage for Crash {
    const NAME: &'static str = "echo.Crash";
}

impl Handler<Crash> for Echo {
    type Reply = u64;
    async fn handle(&mut self, _: Crash, _ctx: &mut Context<Self>) -> u64 {
        panic!("crash requested")
    }
}

/// Never returns: its handler is still running when the runtime goes.
#[derive(Serialize, Deserialize)]
struct Stall;

impl RemoteMessage for Stall {
    const NAME: &'static str = "echo.Stall";
}

impl Handler<Stall> for Echo {
    type Reply = u64;
    async fn handle(&mut self, _: Stall, _ctx: &mut Context<Self>) -> u64 {
        std::future::pending().await
    }
}

/// Local only: holds the actor in its handler until the sender fires or is dropped.
struct Hold(oneshot::Receiver<()>);

impl Handler<Hold> for Echo {
    type Reply = ();
    async fn handle(&mut self, Hold(release): Hold, _ctx: &mut Context<Self>) {
        let _ = release.await;
    }
}

fn spawn_echo(proc: &Proc) -> (ActorRef<Echo>, Arc<Mutex<Option<tokio::task::Id>>>) {
    let handler_task = Arc::new(Mutex::new(None));
    let echo = proc
        .spawn(
            "echo",
            Echo {
                handler_task: handler_task.clone(),
            },
        )
        .unwrap();
    proc.expose(
        &echo,
        RemoteHandlers::new()
            .ask::<Ping>()
            .ask::<Crash>()
            .ask::<Stall>(),
    )
    .unwrap();
    (echo, handler_task)
}

/// What one reply callback was called with, and on which task.
type Answer = (Result<Vec<u8>, RemoteAskError>, Option<tokio::task::Id>);

/// A reply callback that counts its calls and sends each outcome on `answers`.
fn counting_reply(
    calls: &Arc<AtomicUsize>,
    answers: &mpsc::UnboundedSender<Answer>,
) -> RemoteReply {
    let (calls, answers) = (calls.clone(), answers.clone());
    Box::new(move |outcome| {
        calls.fetch_add(1, Ordering::SeqCst);
        let _ = answers.send((outcome, tokio::task::try_id()));
    })
}

/// Fails the test with `what` if `future` does not finish within 10 seconds.
async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting: {what}"),
    }
}

/// Holds the actor in a handler with its mailbox empty; firing the sender releases it.
async fn hold(actor: &ActorRef<Echo>) -> oneshot::Sender<()> {
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

fn ask(proc: &Proc, message: &str, payload: &[u8], reply: RemoteReply) {
    proc.deliver_remote("echo", message, payload, Some(reply))
        .unwrap();
}

/// A remote ask is answered by the task that ran its handler: delivery spawns no task to
/// carry the reply back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ask_is_answered_on_the_handlers_task() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let (_echo, handler_task) = spawn_echo(&proc);
    let (calls, (answers, mut answered)) =
        (Arc::new(AtomicUsize::new(0)), mpsc::unbounded_channel());

    let payload = postcard::to_allocvec(&Ping(41)).unwrap();
    ask(
        &proc,
        Ping::NAME,
        &payload,
        counting_reply(&calls, &answers),
    );
    let (outcome, reply_task) = within("the reply", answered.recv()).await.unwrap();

    assert_eq!(postcard::from_bytes::<u64>(&outcome.unwrap()).unwrap(), 41);
    let handler_task = handler_task
        .lock()
        .unwrap()
        .expect("the handler ran on a task");
    assert_eq!(
        reply_task,
        Some(handler_task),
        "the reply left the handler's task"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Asks queued behind a running handler when the actor stops are each answered `Closed`,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_asks_queued_at_stop_are_answered_closed_once() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let (echo, _) = spawn_echo(&proc);
    let (calls, (answers, mut answered)) =
        (Arc::new(AtomicUsize::new(0)), mpsc::unbounded_channel());

    let release = hold(&echo).await;
    let asks = 200u64;
    for n in 0..asks {
        let payload = postcard::to_allocvec(&Ping(n)).unwrap();
        ask(
            &proc,
            Ping::NAME,
            &payload,
            counting_reply(&calls, &answers),
        );
    }
    // The stop signal is checked before the next envelope, so no queued ask is handled.
    echo.stop();
    release.send(()).unwrap();
    drop(answers);

    let mut closed = 0;
    while let Some((outcome, _)) = within("every answer", answered.recv()).await {
        match outcome {
            Err(RemoteAskError::Closed { actor }) => {
                assert_eq!(&actor, echo.id());
                closed += 1;
            }
            other => panic!("an ask queued at stop was answered {other:?}"),
        }
    }
    assert_eq!(closed, asks, "every queued ask is answered once");
    assert_eq!(calls.load(Ordering::SeqCst), asks as usize);
}

/// An ask delivered after its actor stopped is refused `Closed` and answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ask_to_a_stopped_actor_is_answered_closed() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let (echo, _) = spawn_echo(&proc);
    let (calls, (answers, mut answered)) =
        (Arc::new(AtomicUsize::new(0)), mpsc::unbounded_channel());
    echo.stop();
    within("the actor to stop", async {
        while echo.is_alive() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;

    let payload = postcard::to_allocvec(&Ping(3)).unwrap();
    let refused = proc.deliver_remote(
        "echo",
        Ping::NAME,
        &payload,
        Some(counting_reply(&calls, &answers)),
    );
    assert!(refused.is_err(), "a stopped actor took an ask");
    drop(answers);
    let (outcome, _) = within("the refusal", answered.recv()).await.unwrap();
    assert!(
        matches!(
            outcome,
            Err(RemoteAskError::Closed { .. } | RemoteAskError::NotFound { .. })
        ),
        "{outcome:?}"
    );
    assert!(answered.recv().await.is_none(), "an ask was answered twice");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A panicking handler answers `Panicked` and stops the actor (the default `on_panic`):
/// the asks before it get their replies and the asks queued after it `Closed`, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_remote_ask_answers_panicked_and_the_rest_closed() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let (echo, _) = spawn_echo(&proc);
    let (calls, (answers, mut answered)) =
        (Arc::new(AtomicUsize::new(0)), mpsc::unbounded_channel());

    let (asks, crash) = (100u64, 40u64);
    let release = hold(&echo).await;
    for n in 0..asks {
        if n == crash {
            let payload = postcard::to_allocvec(&Crash).unwrap();
            ask(
                &proc,
                Crash::NAME,
                &payload,
                counting_reply(&calls, &answers),
            );
        } else {
            let payload = postcard::to_allocvec(&Ping(n)).unwrap();
            ask(
                &proc,
                Ping::NAME,
                &payload,
                counting_reply(&calls, &answers),
            );
        }
    }
    release.send(()).unwrap();
    drop(answers);

    let mut n = 0;
    while let Some((outcome, _)) = within("every answer", answered.recv()).await {
        match outcome {
            Ok(encoded) if n < crash => {
                assert_eq!(postcard::from_bytes::<u64>(&encoded).unwrap(), n);
            }
            Err(RemoteAskError::Panicked { actor, message }) if n == crash => {
                assert_eq!(&actor, echo.id());
                assert!(message.contains("crash requested"), "{message}");
            }
            Err(RemoteAskError::Closed { actor }) if n > crash => assert_eq!(&actor, echo.id()),
            other => panic!("ask {n} was answered {other:?}"),
        }
        n += 1;
    }
    assert_eq!(n, asks, "every ask is answered once");
    assert_eq!(calls.load(Ordering::SeqCst), asks as usize);
}

/// A reply callback that panics is contained: the actor keeps running and answers the
/// next ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_reply_callback_leaves_the_actor_running() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let (echo, _) = spawn_echo(&proc);

    let payload = postcard::to_allocvec(&Ping(1)).unwrap();
    ask(
        &proc,
        Ping::NAME,
        &payload,
        Box::new(|_| panic!("callback failed")),
    );

    let (calls, (answers, mut answered)) =
        (Arc::new(AtomicUsize::new(0)), mpsc::unbounded_channel());
    let payload = postcard::to_allocvec(&Ping(2)).unwrap();
    ask(
        &proc,
        Ping::NAME,
        &payload,
        counting_reply(&calls, &answers),
    );
    let (outcome, _) = within("the next reply", answered.recv()).await.unwrap();
    assert_eq!(postcard::from_bytes::<u64>(&outcome.unwrap()).unwrap(), 2);
    assert!(
        echo.is_alive(),
        "a reply callback's panic stopped the actor"
    );
}

/// An ask delivered from a thread outside any runtime is answered by the actor's task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ask_from_outside_a_runtime_is_answered() {
    let proc = Proc::new(ProcId::unique("dispatch"));
    let _echo = spawn_echo(&proc);
    let (calls, (answers, mut answered)) =
        (Arc::new(AtomicUsize::new(0)), mpsc::unbounded_channel());

    let reply = counting_reply(&calls, &answers);
    let delivering = proc.clone();
    std::thread::spawn(move || {
        let payload = postcard::to_allocvec(&Ping(7)).unwrap();
        delivering.deliver_remote("echo", Ping::NAME, &payload, Some(reply))
    })
    .join()
    .unwrap()
    .unwrap();
    let (outcome, _) = within("the reply", answered.recv()).await.unwrap();
    assert_eq!(postcard::from_bytes::<u64>(&outcome.unwrap()).unwrap(), 7);
}

/// When the actor's runtime is dropped, the ask whose handler is running is answered
/// `Abandoned` and the asks queued behind it `Closed`, once each.
#[test]
fn remote_asks_outstanding_at_runtime_shutdown_are_answered_once() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (answers, mut answered) = mpsc::unbounded_channel();
    let proc = Proc::new(ProcId::unique("dispatch"));
    let queued = 10;
    runtime.block_on(async {
        let (echo, _) = spawn_echo(&proc);
        let payload = postcard::to_allocvec(&Stall).unwrap();
        ask(
            &proc,
            Stall::NAME,
            &payload,
            counting_reply(&calls, &answers),
        );
        within("the actor to enter the stalled handler", async {
            while echo.mailbox().unwrap().depth() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        for n in 0..queued {
            let payload = postcard::to_allocvec(&Ping(n)).unwrap();
            ask(
                &proc,
                Ping::NAME,
                &payload,
                counting_reply(&calls, &answers),
            );
        }
    });
    drop(runtime);
    drop(answers);

    let mut outcomes = Vec::new();
    while let Ok((outcome, _)) = answered.try_recv() {
        outcomes.push(outcome);
    }
    let abandoned = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(RemoteAskError::Abandoned)))
        .count();
    let closed = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(RemoteAskError::Closed { .. })))
        .count();
    assert_eq!((abandoned, closed), (1, queued as usize), "{outcomes:?}");
    assert_eq!(calls.load(Ordering::SeqCst), queued as usize + 1);
}

/// A cached exposure is used only while it is the proc's: a table exposed again replaces
/// it at once, and a new actor under the name gets nothing meant for the earlier one.
#[tokio::test]
async fn a_cached_exposure_follows_the_table() {
    let proc = Proc::new(ProcId::unique("cached"));
    let (echo, _) = spawn_echo(&proc);
    let mut cache = crate::ExposureCache::default();
    let ping = postcard::to_allocvec(&Ping(7)).unwrap();
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let ask = |cache: &mut crate::ExposureCache, actor: &crate::ActorId| {
        let reply = counting_reply(&calls, &answers_tx);
        proc.deliver_remote_cached(cache, actor, Ping::NAME, &ping, Some(reply))
    };
    ask(&mut cache, echo.id()).unwrap();
    let (answer, _) = within("the first answer", answers.recv()).await.unwrap();
    assert_eq!(postcard::from_bytes::<u64>(&answer.unwrap()).unwrap(), 7);
    // Another message in between: each is routed by its own name.
    assert!(matches!(
        proc.deliver_remote_cached(&mut cache, echo.id(), "echo.Unknown", &[], None),
        Err(crate::DeliveryError::UnknownMessage { .. })
    ));
    ask(&mut cache, echo.id()).unwrap();
    let (answer, _) = within("the second answer", answers.recv()).await.unwrap();
    assert_eq!(postcard::from_bytes::<u64>(&answer.unwrap()).unwrap(), 7);

    // Exposed again without `Ping`: the cached table must not take it any more.
    proc.expose(&echo, RemoteHandlers::new().ask::<Crash>())
        .unwrap();
    assert!(matches!(
        ask(&mut cache, echo.id()),
        Err(crate::DeliveryError::UnknownMessage { .. })
    ));

    // A new actor under the same name: the earlier id is not found, the new one is.
    echo.stop();
    within("the actor to stop", async {
        while proc.lookup::<Echo>("echo").is_some() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let (second, _) = spawn_echo(&proc);
    assert!(matches!(
        ask(&mut cache, echo.id()),
        Err(crate::DeliveryError::NotFound { .. })
    ));
    ask(&mut cache, second.id()).unwrap();
    let answered = within("the answers", async {
        let mut answered = Vec::new();
        while answered.len() < 3 {
            answered.push(answers.recv().await.unwrap().0);
        }
        answered
    })
    .await;
    assert!(answered.last().is_some_and(Result::is_ok), "{answered:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}
