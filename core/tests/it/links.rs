//! Links and watches: the right reason, exactly once, after the dead actor's messages.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use plexus_core::{Actor, ActorRef, Context, Handler, LinkDied, Proc, ProcId, StopReason};

use crate::common::{Crash, Crashy, within};

/// Records every link notification and every `Note`, in arrival order.
#[derive(Default)]
struct Watcher {
    log: Arc<Mutex<Vec<String>>>,
}

impl Actor for Watcher {
    async fn on_link_died(
        &mut self,
        _ctx: &mut Context<Self>,
        died: LinkDied,
    ) -> ControlFlow<StopReason> {
        self.log.lock().unwrap().push(format!(
            "{:?} {} {}",
            died.kind,
            died.id.name(),
            died.reason
        ));
        ControlFlow::Continue(())
    }
}

struct WatchIt(ActorRef<Crashy>);
impl Handler<WatchIt> for Watcher {
    type Reply = ();
    async fn handle(&mut self, WatchIt(target): WatchIt, ctx: &mut Context<Self>) {
        ctx.watch(&target);
    }
}

struct LinkIt(ActorRef<Crashy>);
impl Handler<LinkIt> for Watcher {
    type Reply = ();
    async fn handle(&mut self, LinkIt(target): LinkIt, ctx: &mut Context<Self>) {
        ctx.link(&target);
    }
}

struct Note(&'static str);
impl Handler<Note> for Watcher {
    type Reply = ();
    async fn handle(&mut self, Note(text): Note, _ctx: &mut Context<Self>) {
        self.log.lock().unwrap().push(text.to_owned());
    }
}

/// A linked actor that panics notifies its link with the panic as the reason; a link with
/// the default hook then stops too, with `LinkDied` naming the first actor.
#[tokio::test]
async fn link_fires_with_the_right_reason() {
    let proc = Proc::new(ProcId::unique("links"));
    let crashy = proc.spawn("crashy", Crashy).unwrap();
    let watcher = Watcher::default();
    let log = watcher.log.clone();
    let watcher = proc.spawn("watcher", watcher).unwrap();
    within("link", watcher.ask(LinkIt(crashy.clone())))
        .await
        .unwrap();

    // A plain actor linked with the default hook.
    struct Plain;
    impl Actor for Plain {}
    struct Link(ActorRef<Crashy>);
    impl Handler<Link> for Plain {
        type Reply = ();
        async fn handle(&mut self, Link(target): Link, ctx: &mut Context<Self>) {
            ctx.link(&target);
        }
    }
    let plain = proc.spawn("plain", Plain).unwrap();
    within("link", plain.ask(Link(crashy.clone())))
        .await
        .unwrap();

    crashy.tell(Crash).await.unwrap();
    let panicked = StopReason::Panicked("crash requested".into());
    assert_eq!(
        within("crashy to stop", crashy.wait_for_stop()).await,
        panicked
    );
    assert_eq!(
        within("the linked plain actor to stop", plain.wait_for_stop()).await,
        StopReason::LinkDied {
            id: crashy.id().clone(),
            reason: Box::new(panicked)
        }
    );
    within("the watcher's log", async {
        while log.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        *log.lock().unwrap(),
        vec!["Link crashy panicked: crash requested".to_owned()]
    );
    assert!(
        watcher.is_alive(),
        "a hook that continues must keep the watcher running"
    );
}

/// A watch registered after the target stopped still fires, exactly once.
#[tokio::test]
async fn watch_after_stop_fires_once() {
    let proc = Proc::new(ProcId::unique("links"));
    let crashy = proc.spawn("crashy", Crashy).unwrap();
    crashy.stop();
    within("crashy to stop", crashy.wait_for_stop()).await;
    let watcher = Watcher::default();
    let log = watcher.log.clone();
    let watcher = proc.spawn("watcher", watcher).unwrap();
    within("watch", watcher.ask(WatchIt(crashy.clone())))
        .await
        .unwrap();
    within("note", watcher.ask(Note("after"))).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "Watch crashy stopped on request".to_owned(),
            "after".to_owned()
        ]
    );
}

/// Watches raced against the target's stop fire exactly once each, never zero or twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_racing_stop_fires_exactly_once() {
    let proc = Proc::new(ProcId::unique("links"));
    for round in 0..300 {
        let target = proc.spawn(&format!("target-{round}"), Crashy).unwrap();
        let watcher = Watcher::default();
        let log = watcher.log.clone();
        let watcher = proc.spawn(&format!("watcher-{round}"), watcher).unwrap();
        let watching = {
            let watcher = watcher.clone();
            let target = target.clone();
            tokio::spawn(async move { watcher.ask(WatchIt(target)).await })
        };
        target.stop();
        within("watch registration", watching)
            .await
            .unwrap()
            .unwrap();
        within("target stop", target.wait_for_stop()).await;
        // The notification travels through the mailbox; a note queued after the watch
        // call completed may overtake it, so wait for the log to fill.
        within("the notification", async {
            while log
                .lock()
                .unwrap()
                .iter()
                .all(|line| !line.starts_with("Watch"))
            {
                tokio::task::yield_now().await;
            }
        })
        .await;
        within("note", watcher.ask(Note("end"))).await.unwrap();
        let watches = log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.starts_with("Watch"))
            .count();
        assert_eq!(watches, 1, "round {round}: the watch fired {watches} times");
        watcher.stop();
    }
}

/// A watch notification arrives after every message the watched actor sent before it
/// stopped.
#[tokio::test]
async fn watch_fires_after_messages_sent_before_stop() {
    struct Chatty(ActorRef<Watcher>);
    impl Actor for Chatty {}
    struct SayThenStop;
    impl Handler<SayThenStop> for Chatty {
        type Reply = ();
        async fn handle(&mut self, _: SayThenStop, ctx: &mut Context<Self>) {
            for text in ["one", "two", "three"] {
                self.0.tell(Note(text)).await.unwrap();
            }
            ctx.stop();
        }
    }
    struct WatchChatty(ActorRef<Chatty>);
    impl Handler<WatchChatty> for Watcher {
        type Reply = ();
        async fn handle(&mut self, WatchChatty(target): WatchChatty, ctx: &mut Context<Self>) {
            ctx.watch(&target);
        }
    }

    let proc = Proc::new(ProcId::unique("links"));
    let watcher = Watcher::default();
    let log = watcher.log.clone();
    let watcher = proc.spawn("watcher", watcher).unwrap();
    let chatty = proc.spawn("chatty", Chatty(watcher.clone())).unwrap();
    within("watch", watcher.ask(WatchChatty(chatty.clone())))
        .await
        .unwrap();
    chatty.tell(SayThenStop).await.unwrap();
    within("chatty to stop", chatty.wait_for_stop()).await;
    within("the notification", async {
        while log.lock().unwrap().len() < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        *log.lock().unwrap(),
        vec!["one", "two", "three", "Watch chatty stopped normally"]
    );
}
