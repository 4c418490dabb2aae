//! Promise 3.2: every ask ends with the reply or a typed error.

use std::time::Duration;

use plexus_core::{Actor, AskError, Context, Handler, Proc, ProcId};

use crate::common::{Crash, Crashy, Ping, within};

struct Slow;
impl Actor for Slow {}

struct Sleep(Duration);
impl Handler<Sleep> for Slow {
    type Reply = &'static str;
    async fn handle(&mut self, Sleep(how_long): Sleep, _ctx: &mut Context<Self>) -> &'static str {
        tokio::time::sleep(how_long).await;
        "awake"
    }
}

/// An ask that gets no reply within its timeout fails with `Timeout`, naming the recipient.
#[tokio::test]
async fn ask_timeout_yields_timeout_error() {
    let proc = Proc::new(ProcId::unique("ask"));
    let slow = proc.spawn("slow", Slow).unwrap();
    let outcome = slow
        .ask_timeout(Sleep(Duration::from_millis(300)), Duration::from_millis(50))
        .await;
    assert_eq!(
        outcome,
        Err(AskError::Timeout {
            recipient: slow.id().clone(),
            timeout_ms: 50
        })
    );
    // The abandoned request does not hurt the actor: the next ask is answered.
    let next = within("the next ask", slow.ask(Sleep(Duration::from_millis(1)))).await;
    assert_eq!(next, Ok("awake"));
}

/// An ask answered in time returns the reply.
#[tokio::test]
async fn ask_within_timeout_returns_reply() {
    let proc = Proc::new(ProcId::unique("ask"));
    let slow = proc.spawn("slow", Slow).unwrap();
    let reply = slow
        .ask_timeout(Sleep(Duration::from_millis(1)), Duration::from_secs(10))
        .await;
    assert_eq!(reply, Ok("awake"));
}

/// An ask to a stopped actor fails with `Closed`, naming the recipient.
#[tokio::test]
async fn ask_to_stopped_actor_yields_closed() {
    let proc = Proc::new(ProcId::unique("ask"));
    let crashy = proc.spawn("crashy", Crashy).unwrap();
    crashy.stop();
    within("the stop", crashy.wait_for_stop()).await;
    assert_eq!(
        crashy.ask(Ping).await,
        Err(AskError::Closed {
            recipient: crashy.id().clone()
        })
    );
}

/// An ask whose handler panics fails with `Panicked` and the panic message.
#[tokio::test]
async fn ask_to_panicking_handler_yields_panicked() {
    let proc = Proc::new(ProcId::unique("ask"));
    let crashy = proc.spawn("crashy", Crashy).unwrap();
    let outcome = within("the ask", crashy.ask(Crash)).await;
    assert_eq!(
        outcome,
        Err(AskError::Panicked {
            recipient: crashy.id().clone(),
            message: "crash requested".into()
        })
    );
}

/// Asks queued behind a stop are answered with `Closed` rather than left hanging.
#[tokio::test]
async fn queued_asks_fail_when_actor_stops() {
    let proc = Proc::new(ProcId::unique("ask"));
    let slow = proc.spawn("slow", Slow).unwrap();
    let busy = tokio::spawn({
        let slow = slow.clone();
        async move { slow.ask(Sleep(Duration::from_millis(100))).await }
    });
    tokio::task::yield_now().await;
    let queued = tokio::spawn({
        let slow = slow.clone();
        async move { slow.ask(Sleep(Duration::from_secs(30))).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    slow.stop();
    assert_eq!(within("the running ask", busy).await.unwrap(), Ok("awake"));
    let queued = within("the queued ask", queued).await.unwrap();
    assert_eq!(
        queued,
        Err(AskError::Closed {
            recipient: slow.id().clone()
        })
    );
}
