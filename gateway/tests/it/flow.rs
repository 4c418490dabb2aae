//! Flow control across two gateways over TCP (design 3.4): a blocked recipient stalls only
//! its own senders, which run out of credit, while other recipients keep receiving.

use std::sync::Arc;
use std::time::Duration;

use plexus_core::{Actor, Context, Handler, Mailbox, Proc, ProcId, RemoteHandlers};
use plexus_transport::{FlowConfig, InprocNetwork};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;

use crate::support::{Ping, WAIT, any_tcp, networked, ping, spawn_recorder};

/// Handles a ping only once the gate lets it through.
struct Gated {
    gate: Arc<Semaphore>,
    seen: mpsc::UnboundedSender<u64>,
}

impl Actor for Gated {}

impl Handler<Ping> for Gated {
    type Reply = ();

    async fn handle(&mut self, Ping(n): Ping, _ctx: &mut Context<Self>) {
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        let _ = self.seen.send(n);
    }
}

/// While one actor is blocked, the tells for it stop at their credit window (so the
/// sender cannot flush), a tell for another actor behind the same connection still
/// arrives at once, and once the actor is let through every tell arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_recipient_stalls_only_its_own_flow() {
    // Well past the default window, so the tells cannot all leave.
    let count = 3 * u64::from(FlowConfig::default().window_messages);
    let network = InprocNetwork::new();
    let (sender, receiver) = (networked(&network), networked(&network));
    let server = receiver.serve(any_tcp()).await.unwrap();
    let proc = Proc::builder(ProcId::unique("gated"))
        .default_mailbox(Mailbox::Bounded(1))
        .build();
    let _attached = receiver.attach(&proc).unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (gated_tx, mut gated_seen) = mpsc::unbounded_channel();
    let gated = proc
        .spawn(
            "gated",
            Gated {
                gate: gate.clone(),
                seen: gated_tx,
            },
        )
        .unwrap();
    proc.expose(&gated, RemoteHandlers::new().tell::<Ping>())
        .unwrap();
    let (fast_tx, mut fast_seen) = mpsc::unbounded_channel();
    let fast = spawn_recorder(&proc, "fast", fast_tx);

    for n in 0..count {
        sender
            .post_to(server.location(), ping(gated.id().clone(), n))
            .unwrap();
    }
    assert!(
        timeout(Duration::from_millis(500), sender.flush())
            .await
            .is_err(),
        "all {count} tells left although their recipient takes none"
    );
    sender.post_to(server.location(), ping(fast, 1)).unwrap();
    assert_eq!(
        timeout(WAIT, fast_seen.recv()).await.unwrap(),
        Some(("fast", 1)),
        "a tell for another actor was held up by the blocked one"
    );

    gate.add_permits(count as usize);
    for expected in 0..count {
        let n = timeout(WAIT, gated_seen.recv())
            .await
            .unwrap_or_else(|_| panic!("tell {expected} did not arrive"))
            .unwrap();
        assert_eq!(n, expected);
    }
    timeout(WAIT, sender.flush()).await.expect("flush hung");
    assert_eq!(sender.stats().bounced, 0);
    assert_eq!(receiver.stats().bounced, 0);
}
