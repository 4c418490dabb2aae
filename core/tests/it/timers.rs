//! Context services: timers, intervals and attached streams.

use std::time::Duration;

use plexus_core::{Actor, Context, Handler, Proc, ProcId};

use crate::common::within;

#[derive(Default)]
struct Clock {
    ticks: u32,
    late: bool,
    items: Vec<u32>,
}

struct Tick;
struct Late;
struct Start;
struct Read;

impl Actor for Clock {}

impl Handler<Tick> for Clock {
    type Reply = ();
    async fn handle(&mut self, _: Tick, _ctx: &mut Context<Self>) {
        self.ticks += 1;
    }
}

impl Handler<Late> for Clock {
    type Reply = ();
    async fn handle(&mut self, _: Late, _ctx: &mut Context<Self>) {
        self.late = true;
    }
}

impl Handler<u32> for Clock {
    type Reply = ();
    async fn handle(&mut self, item: u32, _ctx: &mut Context<Self>) {
        self.items.push(item);
    }
}

impl Handler<Start> for Clock {
    type Reply = ();
    async fn handle(&mut self, _: Start, ctx: &mut Context<Self>) {
        ctx.send_after(Duration::from_millis(30), Late);
        ctx.send_interval(Duration::from_millis(10), || Tick);
        ctx.attach_stream(futures::stream::iter(0..5u32));
    }
}

impl Handler<Read> for Clock {
    type Reply = (u32, bool, Vec<u32>);
    async fn handle(&mut self, _: Read, _ctx: &mut Context<Self>) -> Self::Reply {
        (self.ticks, self.late, self.items.clone())
    }
}

/// `send_after` delivers once after its delay, `send_interval` keeps delivering, and an
/// attached stream's items arrive in order.
#[tokio::test(start_paused = true)]
async fn timers_intervals_and_streams_deliver() {
    let proc = Proc::new(ProcId::unique("timers"));
    let clock = proc.spawn("clock", Clock::default()).unwrap();
    clock.tell(Start).await.unwrap();
    tokio::time::sleep(Duration::from_millis(15)).await;
    let (ticks, late, items) = within("a read", clock.ask(Read)).await.unwrap();
    assert_eq!((ticks, late), (1, false));
    assert_eq!(items, vec![0, 1, 2, 3, 4]);
    tokio::time::sleep(Duration::from_millis(40)).await;
    let (ticks, late, _) = within("a read", clock.ask(Read)).await.unwrap();
    assert!(late, "send_after never fired");
    assert_eq!(ticks, 5);
}

/// Timers die with the actor: after a stop no timer task keeps running.
#[tokio::test(start_paused = true)]
async fn timers_end_with_the_actor() {
    struct Keeper(Option<plexus_core::TaskHandle>);
    impl Actor for Keeper {}
    struct Arm;
    impl Handler<Arm> for Keeper {
        type Reply = ();
        async fn handle(&mut self, _: Arm, ctx: &mut Context<Self>) {
            self.0 = Some(ctx.send_interval(Duration::from_millis(10), || Arm2));
        }
    }
    struct Arm2;
    impl Handler<Arm2> for Keeper {
        type Reply = ();
        async fn handle(&mut self, _: Arm2, _ctx: &mut Context<Self>) {}
    }
    struct Handle;
    impl Handler<Handle> for Keeper {
        type Reply = Option<plexus_core::TaskHandle>;
        async fn handle(&mut self, _: Handle, _ctx: &mut Context<Self>) -> Self::Reply {
            self.0.clone()
        }
    }
    let proc = Proc::new(ProcId::unique("timers"));
    let keeper = proc.spawn("keeper", Keeper(None)).unwrap();
    keeper.tell(Arm).await.unwrap();
    let handle = within("the handle", keeper.ask(Handle))
        .await
        .unwrap()
        .unwrap();
    assert!(!handle.is_finished());
    keeper.stop();
    within("the stop", keeper.wait_for_stop()).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(handle.is_finished(), "the interval outlived its actor");
}
