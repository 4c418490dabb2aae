//! Loss seen from the accepting side, over TCP on 127.0.0.1: a gateway that dials
//! announces the location it serves, and the gateway it dialed tells its procs when the
//! last connection from that location closes.

use std::ops::ControlFlow;
use std::time::Duration;

use plexus_core::{
    Actor, ActorRef, Context, Handler, LinkDied, Location, Proc, ProcAddr, ProcId, RemoteActor,
    RemoteHandlers, RemoteMessage, StopReason,
};
use plexus_gateway::{Gateway, GatewayConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{WAIT, any_tcp};

/// A remote message nobody sends; it makes `Anchor` a remote actor.
#[derive(Debug, Serialize, Deserialize)]
struct Nudge;
impl RemoteMessage for Nudge {
    const NAME: &'static str = "accepted-test.Nudge";
}

/// Reports the links that die; never stops for them.
struct Anchor(mpsc::UnboundedSender<LinkDied>);

impl Actor for Anchor {
    async fn on_link_died(
        &mut self,
        _ctx: &mut Context<Self>,
        died: LinkDied,
    ) -> ControlFlow<StopReason> {
        let _ = self.0.send(died);
        ControlFlow::Continue(())
    }
}

impl Handler<Nudge> for Anchor {
    type Reply = ();
    async fn handle(&mut self, _: Nudge, _ctx: &mut Context<Self>) {}
}

impl RemoteActor for Anchor {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Nudge>()
    }
}

/// Links itself to the remote actor it is given (a local message); outlives its links.
struct Linker;
impl Actor for Linker {
    async fn on_link_died(
        &mut self,
        _ctx: &mut Context<Self>,
        _died: LinkDied,
    ) -> ControlFlow<StopReason> {
        ControlFlow::Continue(())
    }
}

struct LinkTo(ActorRef<Anchor>);

impl Handler<LinkTo> for Linker {
    type Reply = ();
    async fn handle(&mut self, LinkTo(other): LinkTo, ctx: &mut Context<Self>) {
        ctx.link(&other);
    }
}

fn gateway() -> Gateway {
    Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap()
}

/// A link held only over a connection the other side dialed (this side never dials
/// back) fires with `Disconnected` when the dialing gateway goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_over_an_accepted_connection_fires_when_the_dialer_goes() {
    // The accepting side: an anchor that reports its dead links.
    let acceptor = gateway();
    let acceptor_server = acceptor.serve(any_tcp()).await.unwrap();
    let anchor_proc = Proc::new(ProcId::unique("anchor"));
    let _anchor_attachment = acceptor.attach(&anchor_proc).unwrap();
    let (died_tx, mut died) = mpsc::unbounded_channel();
    let anchor = anchor_proc.spawn("anchor", Anchor(died_tx)).unwrap();
    anchor_proc.expose_remote(&anchor).unwrap();

    // The dialing side serves a location too, which its hellos announce.
    let dialer = gateway();
    let dialer_server = dialer.serve(any_tcp()).await.unwrap();
    assert_eq!(
        dialer.transport().unwrap().advertised_location().as_ref(),
        Some(dialer_server.location())
    );
    let linker_proc = Proc::new(ProcId::unique("linker"));
    let dialer_attachment = dialer.attach(&linker_proc).unwrap();
    let addr = ProcAddr::new(anchor_proc.id().clone(), acceptor_server.location().clone());
    let remote: ActorRef<Anchor> = linker_proc.lookup_remote(&addr, "anchor").await.unwrap();
    let linker = linker_proc.spawn("linker", Linker).unwrap();
    linker.tell(LinkTo(remote)).await.unwrap();

    // The anchor's side holds the other half of the link, and never dialed the linker.
    timeout(WAIT, async {
        while anchor_proc.remote_watch_count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the link never reached the anchor's proc");
    assert_eq!(acceptor.transport().unwrap().dest_count(), 0);
    assert_eq!(acceptor_server.connection_count(), 1);

    // The dialing gateway goes; its proc and actor stay, so only the lost connection
    // can fire the link.
    drop((dialer_server, dialer_attachment, dialer));
    let link = timeout(WAIT, died.recv())
        .await
        .expect("the link did not fire when the dialer went")
        .unwrap();
    assert_eq!(&link.id, linker.id());
    assert!(
        matches!(link.reason, StopReason::Disconnected),
        "fired with {:?}",
        link.reason
    );
    assert!(linker.is_alive());
}

/// A gateway that serves nothing announces no location, and announces the one it
/// serves while it serves it.
#[tokio::test]
async fn the_announced_location_follows_the_served_ones() {
    let gateway = gateway();
    let manager = gateway.transport().unwrap();
    assert_eq!(manager.advertised_location(), None);
    let first = gateway.serve(any_tcp()).await.unwrap();
    let second = gateway.serve(any_tcp()).await.unwrap();
    assert_eq!(
        manager.advertised_location().as_ref(),
        Some(second.location())
    );
    let first_location = first.location().clone();
    drop(second);
    assert_eq!(manager.advertised_location(), Some(first_location));
    drop(first);
    assert_eq!(manager.advertised_location(), None);
}
