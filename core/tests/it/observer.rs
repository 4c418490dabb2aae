//! The observer hooks: spawn, status, handlers, restarts, stop and live mailbox depth.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use plexus_core::{
    Actor, ActorInfo, ActorProbe, ActorRef, ActorStatus, BoxError, ChildSpec, Context, Handler,
    MailboxGauge, Observer, Proc, ProcId, StopReason,
};
use tokio::sync::oneshot;

use crate::common::{Crash, Crashy, Hold, Ping, Recorder, within};

#[derive(Default)]
struct Recording {
    events: Mutex<Vec<String>>,
    gauges: Mutex<Vec<(String, MailboxGauge)>>,
    asks: AtomicU32,
}

struct Probe {
    name: String,
    shared: Arc<Recording>,
}

impl ActorProbe for Probe {
    fn status(&self, status: ActorStatus) {
        self.shared
            .events
            .lock()
            .unwrap()
            .push(format!("{} {status:?}", self.name));
    }
    fn handler_started(&self, message_type: &'static str) {
        let short = message_type.rsplit("::").next().unwrap_or(message_type);
        self.shared
            .events
            .lock()
            .unwrap()
            .push(format!("{} handle {short}", self.name));
    }
    fn panicked(&self, message: &str) {
        self.shared
            .events
            .lock()
            .unwrap()
            .push(format!("{} panicked {message}", self.name));
    }
    fn restarted(&self) {
        self.shared
            .events
            .lock()
            .unwrap()
            .push(format!("{} restarted", self.name));
    }
    fn stopped(&self, reason: &StopReason) {
        self.shared
            .events
            .lock()
            .unwrap()
            .push(format!("{} stopped {reason}", self.name));
    }
    fn child_spawned(&self, child: &plexus_core::ActorId) {
        self.shared
            .events
            .lock()
            .unwrap()
            .push(format!("{} spawned {}", self.name, child.name()));
    }
    fn linked(&self, other: &plexus_core::ActorId, kind: plexus_core::LinkKind) {
        self.shared
            .events
            .lock()
            .unwrap()
            .push(format!("{} {kind:?} {}", self.name, other.name()));
    }
    fn ask_started(&self, _target: &plexus_core::ActorId) -> u64 {
        self.shared.asks.fetch_add(1, Ordering::SeqCst);
        7
    }
    fn ask_finished(&self, token: u64) {
        assert_eq!(token, 7);
        self.shared.asks.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Watch(Arc<Recording>);

impl Observer for Watch {
    fn actor_spawned(&self, info: &ActorInfo) -> Option<Arc<dyn ActorProbe>> {
        self.0
            .gauges
            .lock()
            .unwrap()
            .push((info.id.name().to_owned(), info.gauge.clone()));
        Some(Arc::new(Probe {
            name: info.id.name().to_owned(),
            shared: self.0.clone(),
        }))
    }
}

/// The probe hears a supervised child's lifecycle in order: start, handler, panic,
/// restart, and the final stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_hears_lifecycle_in_order() {
    struct Parent(Option<ActorRef<Crashy>>);
    impl Actor for Parent {
        async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
            self.0 = Some(ctx.spawn_child(ChildSpec::new("child", || Crashy))?);
            Ok(())
        }
    }
    struct Get;
    impl Handler<Get> for Parent {
        type Reply = Option<ActorRef<Crashy>>;
        async fn handle(&mut self, _: Get, _ctx: &mut Context<Self>) -> Self::Reply {
            self.0.clone()
        }
    }
    let shared = Arc::new(Recording::default());
    let proc = Proc::builder(ProcId::unique("observed"))
        .observer(Arc::new(Watch(shared.clone())))
        .build();
    let parent = proc.spawn("parent", Parent(None)).unwrap();
    let child = within("child", parent.ask(Get)).await.unwrap().unwrap();
    child.tell(Crash).await.unwrap();
    assert_eq!(within("ping", child.ask(Ping)).await, Ok(1));
    parent.stop();
    within("stop", parent.wait_for_stop()).await;

    let child_events: Vec<String> = shared
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event.starts_with("child"))
        .cloned()
        .collect();
    assert_eq!(
        child_events,
        vec![
            "child Starting",
            "child Running",
            "child handle Crash",
            "child panicked crash requested",
            "child Stopping",
            "child Restarting",
            "child restarted",
            "child Starting",
            "child Running",
            "child handle Ping",
            "child Stopping",
            "child stopped shut down",
            "child Stopped",
        ]
    );
    assert_eq!(
        shared.asks.load(Ordering::SeqCst),
        0,
        "asks from outside actors record no edge"
    );
}

/// The gauge handed to the observer shows the live depth while the actor is busy.
#[tokio::test]
async fn gauge_shows_depth_behind_a_busy_handler() {
    let shared = Arc::new(Recording::default());
    let proc = Proc::builder(ProcId::unique("observed"))
        .observer(Arc::new(Watch(shared.clone())))
        .build();
    let recorder = proc.spawn("rec", Recorder::default()).unwrap();
    let (release, hold) = oneshot::channel();
    recorder.tell(Hold(hold)).await.unwrap();
    for seq in 0..5 {
        recorder.tell(crate::common::Record(0, seq)).await.unwrap();
    }
    let gauge = shared.gauges.lock().unwrap()[0].1.clone();
    within("depth 5", async {
        while gauge.depth() != 5 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    release.send(()).unwrap();
    within("depth 0", async {
        while gauge.depth() != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// An ask made from inside a handler records a wait-for edge for its duration.
#[tokio::test]
async fn ask_inside_handler_records_a_wait_edge() {
    struct Asker(ActorRef<Crashy>);
    impl Actor for Asker {}
    struct Go;
    impl Handler<Go> for Asker {
        type Reply = u32;
        async fn handle(&mut self, _: Go, _ctx: &mut Context<Self>) -> u32 {
            self.0.ask(Ping).await.unwrap_or(99)
        }
    }
    let shared = Arc::new(Recording::default());
    let proc = Proc::builder(ProcId::unique("observed"))
        .observer(Arc::new(Watch(shared.clone())))
        .build();
    let target = proc.spawn("target", Crashy).unwrap();
    let asker = proc.spawn("asker", Asker(target)).unwrap();
    assert_eq!(within("go", asker.ask(Go)).await, Ok(0));
    assert_eq!(
        shared.asks.load(Ordering::SeqCst),
        0,
        "the edge outlived the ask"
    );
}

/// A two-way link is reported to the probes of both actors; a one-way watch only to the
/// watcher's.
#[tokio::test]
async fn both_sides_of_a_link_are_reported() {
    struct Linker;
    impl Actor for Linker {}
    struct LinkTo(ActorRef<Crashy>, bool);
    impl Handler<LinkTo> for Linker {
        type Reply = ();
        async fn handle(&mut self, LinkTo(other, two_way): LinkTo, ctx: &mut Context<Self>) {
            if two_way {
                ctx.link(&other)
            } else {
                ctx.watch(&other)
            }
        }
    }
    let shared = Arc::new(Recording::default());
    let proc = Proc::builder(ProcId::unique("observed"))
        .observer(Arc::new(Watch(shared.clone())))
        .build();
    let linked = proc.spawn("linked", Crashy).unwrap();
    let watched = proc.spawn("watched", Crashy).unwrap();
    let linker = proc.spawn("linker", Linker).unwrap();
    within("link", linker.ask(LinkTo(linked.clone(), true)))
        .await
        .unwrap();
    within("watch", linker.ask(LinkTo(watched.clone(), false)))
        .await
        .unwrap();
    // The registration reaches the other side as a signal; a ping after it is handled later.
    within("ping", linked.ask(Ping)).await.unwrap();
    within("ping", watched.ask(Ping)).await.unwrap();
    let mut links: Vec<String> = shared
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event.contains(" Link ") || event.contains(" Watch "))
        .cloned()
        .collect();
    links.sort();
    assert_eq!(
        links,
        vec![
            "linked Link linker",
            "linker Link linked",
            "linker Watch watched"
        ]
    );
}
