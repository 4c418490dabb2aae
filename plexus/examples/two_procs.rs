//! Two procs in one process sharing one gateway: they reach each other's actors through
//! remote refs, and the gateway hands every envelope straight to the other proc, with no
//! socket and nothing sent to the network.
//!
//! Run with `cargo run --example two_procs`.

#![allow(clippy::print_stdout)]

use plexus::{
    Actor, ActorRef, BoxError, Context, Gateway, Handler, Location, Proc, ProcAddr, ProcId,
    RemoteActor, RemoteHandlers, RemoteMessage,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// A ball with a count, and the ref to hit it back to.
#[derive(Debug, Serialize, Deserialize)]
struct Ball {
    count: u64,
    back: ActorRef<Player>,
}
impl RemoteMessage for Ball {
    const NAME: &'static str = "two_procs.Ball";
}

/// The ball count that ends the rally; odd, so it lands with `ping`, who started it.
const RALLY: u64 = 1_001;

/// Hits every ball back until the rally is long enough.
struct Player {
    name: &'static str,
    me: Option<ActorRef<Player>>,
    rally: u64,
    done: Option<oneshot::Sender<u64>>,
}

impl Actor for Player {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.me = Some(ctx.actor_ref().clone());
        Ok(())
    }
}

impl Handler<Ball> for Player {
    type Reply = ();
    async fn handle(&mut self, ball: Ball, _ctx: &mut Context<Self>) {
        if ball.count >= self.rally {
            if let Some(done) = self.done.take() {
                let _ = done.send(ball.count);
            }
            return;
        }
        let Some(me) = self.me.clone() else { return };
        if ball.count % 250 == 0 {
            println!("  {} hits ball {}", self.name, ball.count);
        }
        let _ = ball
            .back
            .tell(Ball {
                count: ball.count + 1,
                back: me,
            })
            .await;
    }
}

impl RemoteActor for Player {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Ball>()
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // An isolated gateway: nothing leaves this process.
    let gateway = Gateway::isolated(Location::Local(1));
    let left = Proc::new(ProcId::unique("left"));
    let right = Proc::new(ProcId::unique("right"));
    let _left_attachment = gateway.attach(&left)?;
    let _right_attachment = gateway.attach(&right)?;

    let (done_tx, done) = oneshot::channel();
    let ping = left.spawn(
        "ping",
        Player {
            name: "ping",
            me: None,
            rally: RALLY,
            done: Some(done_tx),
        },
    )?;
    left.expose_remote(&ping)?;
    let pong = right.spawn(
        "pong",
        Player {
            name: "pong",
            me: None,
            rally: u64::MAX,
            done: None,
        },
    )?;
    right.expose_remote(&pong)?;

    // The left proc reaches `pong` by address and name, like an actor on another host.
    let right_addr = ProcAddr::new(right.id().clone(), gateway.default_location());
    let pong_from_left = left.lookup_remote::<Player>(&right_addr, "pong").await?;
    println!(
        "ping is {}, pong is {} (remote ref: {})",
        ping.id(),
        pong_from_left.id(),
        pong_from_left.is_remote()
    );
    pong_from_left
        .tell(Ball {
            count: 0,
            back: ping.clone(),
        })
        .await?;

    let rally = done.await?;
    let stats = gateway.stats();
    println!(
        "rally of {rally}: the gateway delivered {} envelopes between the procs and forwarded {} to the network",
        stats.delivered, stats.forwarded
    );
    left.shutdown().await;
    right.shutdown().await;
    Ok(())
}
