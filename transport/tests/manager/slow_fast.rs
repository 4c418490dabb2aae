//! Design 3.4 end to end: a slow recipient with a full mailbox does not delay a fast one
//! behind the same TCP connection. Real procs on both ends: the receiving one delivers
//! through `Proc::deliver_remote`, the flow target a gateway provides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome, Recipient};
use plexus_core::{
    Actor, ActorId, Context, DeliveryError, Handler, Location, Mailbox, MailboxGauge, Proc, ProcId,
    RemoteHandlers, RemoteMessage,
};
use plexus_transport::{
    ConnectionConfig, ConnectionHandle, ConnectionRef, Dest, FlowConfig, FlowTarget, Hello,
    Refused, Room, TcpConfig, TcpWireBuilder, TcpWireListener, WireListener, perform_handshake,
    spawn_connection_with_flow,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::{config, manager, within};

/// The message both recipients take.
#[derive(Debug, Serialize, Deserialize)]
struct Tick(u64);

impl RemoteMessage for Tick {
    const NAME: &'static str = "slow_fast.Tick";
}

/// Handles each tick only once its gate opens, reporting the ticks it handled.
struct Slow {
    gate: watch::Receiver<bool>,
    handled: mpsc::UnboundedSender<u64>,
}

impl Actor for Slow {}

impl Handler<Tick> for Slow {
    type Reply = ();
    async fn handle(&mut self, Tick(n): Tick, _ctx: &mut Context<Self>) {
        let _ = self.gate.wait_for(|open| *open).await;
        let _ = self.handled.send(n);
    }
}

/// Reports every tick at once.
struct Fast {
    handled: mpsc::UnboundedSender<u64>,
}

impl Actor for Fast {}

impl Handler<Tick> for Fast {
    type Reply = ();
    async fn handle(&mut self, Tick(n): Tick, _ctx: &mut Context<Self>) {
        let _ = self.handled.send(n);
    }
}

/// A proc's exposed actors as a flow target: delivery through `deliver_remote`, room
/// read from the mailbox gauges.
pub(crate) struct ProcTarget {
    proc: Proc,
    gauges: Mutex<HashMap<String, MailboxGauge>>,
}

impl ProcTarget {
    fn gauge(&self, recipient: &Recipient) -> Option<MailboxGauge> {
        let Recipient::Actor(actor) = recipient else {
            return None;
        };
        self.gauges.lock().unwrap().get(actor.name()).cloned()
    }
}

impl FlowTarget for ProcTarget {
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
        self.deliver(envelope, None)
    }

    fn try_deliver_from(
        &self,
        envelope: NetworkEnvelope,
        from: &ConnectionRef,
    ) -> Result<(), Refused> {
        self.deliver(envelope, Some(from))
    }

    async fn wait_for_room(&self, recipient: &Recipient) -> Room {
        let Some(gauge) = self.gauge(recipient) else {
            return Room::Gone;
        };
        // The gauge has no wake-up, so poll it; the test's mailboxes drain in bursts.
        loop {
            if gauge.is_closed() {
                return Room::Gone;
            }
            if gauge
                .capacity()
                .is_none_or(|capacity| gauge.depth() < capacity)
            {
                return Room::Available;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl ProcTarget {
    /// Delivers a tell, or an ask whose reply goes back on `from`.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value, as FlowTarget requires"
    )]
    fn deliver(
        &self,
        envelope: NetworkEnvelope,
        from: Option<&ConnectionRef>,
    ) -> Result<(), Refused> {
        let Recipient::Actor(actor) = &envelope.recipient else {
            return Err(Refused::Gone(envelope));
        };
        if envelope.kind.request_id().is_some() {
            // An ask's pending delivery holds its reply: look before delivering, so a
            // full mailbox never swallows one (the test's asks go to a roomy mailbox).
            let gauge = self.gauge(&envelope.recipient);
            if gauge.is_some_and(|g| g.capacity().is_some_and(|c| g.depth() >= c)) {
                return Err(Refused::Full(envelope));
            }
        }
        let reply = match (envelope.kind.request_id(), from) {
            (Some(id), Some(from)) => Some(answer(id, &envelope, from)),
            _ => None,
        };
        match self
            .proc
            .deliver_remote(actor.name(), &envelope.name, &envelope.payload, reply)
        {
            Ok(()) => Ok(()),
            // A tell's pending delivery holds only the decoded message: dropping it and
            // queueing the envelope loses nothing.
            Err(DeliveryError::Full { .. }) => Err(Refused::Full(envelope)),
            Err(DeliveryError::NotFound { .. } | DeliveryError::Closed { .. }) => {
                Err(Refused::Gone(envelope))
            }
            Err(other) => panic!("unexpected delivery error {other}"),
        }
    }
}

/// The reply callback of ask `id`: an `Ok` response carrying the reply, on the
/// connection the ask came from.
fn answer(id: u64, request: &NetworkEnvelope, from: &ConnectionRef) -> plexus_core::RemoteReply {
    let from = from.clone();
    let recipient = request
        .sender
        .clone()
        .map_or(Recipient::Transport, Recipient::Actor);
    Box::new(move |outcome| {
        let mut response = NetworkEnvelope::control(EnvelopeKind::Response {
            id,
            outcome: if outcome.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            is_last: true,
        });
        response.recipient = recipient;
        response.payload = outcome.unwrap_or_default().into();
        if let Err(full) = from.try_send(response) {
            let response = full.into_envelope();
            tokio::spawn(async move {
                let _ = from.send(response).await;
            });
        }
    })
}

/// A peer proc `peer` behind a TCP listener, serving one connection with flow control
/// (window `window`) over a [`ProcTarget`].
async fn serve(
    proc: Proc,
    gauges: HashMap<String, MailboxGauge>,
    window: FlowConfig,
) -> (Location, tokio::task::JoinHandle<ConnectionHandle>) {
    let mut listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let location = listener.location().clone();
    let target = Arc::new(ProcTarget {
        proc,
        gauges: Mutex::new(gauges),
    });
    let server = tokio::spawn(async move {
        let mut wire = listener.accept().await.unwrap();
        let hello = Hello::new(ProcId::new("peer", 1), 2).with_flow(window);
        let negotiated = perform_handshake(&mut wire, hello, Duration::from_secs(5))
            .await
            .unwrap();
        spawn_connection_with_flow(
            wire,
            negotiated,
            ConnectionConfig::default(),
            |_| {},
            target,
        )
        .unwrap()
    });
    (location, server)
}

/// A tell of `Tick(n)` from local actor `sender` to the peer's actor `to`.
fn tick(sender: &str, to: &str, n: u64) -> NetworkEnvelope {
    NetworkEnvelope::message(
        Some(ActorId::new(ProcId::new("local", 1), sender, 0)),
        Recipient::Actor(ActorId::new(ProcId::new("peer", 1), to, 0)),
        EnvelopeKind::Regular,
        &Tick(n),
    )
    .unwrap()
}

/// Two recipients behind one TCP connection: `slow` blocks in its handler with a full
/// mailbox, `fast` handles at once. The fast one receives all its 5,000 ticks, in order,
/// while the slow one has handled none of its 500 and its sender is held back by credit;
/// once the slow one is released it gets all of its ticks in order. Prints both timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_recipient_does_not_delay_a_fast_one_on_the_same_connection() {
    const FAST: u64 = 5_000;
    const SLOW: u64 = 500;
    let proc = Proc::new(ProcId::new("peer", 1));
    let (gate, gate_rx) = watch::channel(false);
    let (slow_tx, mut slow_handled) = mpsc::unbounded_channel();
    let (fast_tx, mut fast_handled) = mpsc::unbounded_channel();
    let slow = proc
        .spawn_with(
            "slow",
            Slow {
                gate: gate_rx,
                handled: slow_tx,
            },
            Mailbox::Bounded(8),
        )
        .unwrap();
    let fast = proc
        .spawn_with("fast", Fast { handled: fast_tx }, Mailbox::Bounded(64))
        .unwrap();
    proc.expose(&slow, RemoteHandlers::new().tell::<Tick>())
        .unwrap();
    proc.expose(&fast, RemoteHandlers::new().tell::<Tick>())
        .unwrap();
    let gauges = HashMap::from([
        ("slow".to_owned(), slow.mailbox().unwrap()),
        ("fast".to_owned(), fast.mailbox().unwrap()),
    ]);
    let window = FlowConfig {
        window_messages: 64,
        ..FlowConfig::default()
    };
    let (location, server) = serve(proc.clone(), gauges, window).await;

    let manager = Arc::new(manager(
        TcpWireBuilder::new(TcpConfig::default()),
        config(2_000, 60_000),
    ));
    let dest = Dest::new(location);
    let started = Instant::now();
    let slow_sender = {
        let (manager, dest) = (manager.clone(), dest.clone());
        tokio::spawn(async move {
            for n in 0..SLOW {
                manager.send(&dest, tick("a", "slow", n)).await.unwrap();
            }
            started.elapsed()
        })
    };
    let fast_sender = {
        let (manager, dest) = (manager.clone(), dest.clone());
        tokio::spawn(async move {
            for n in 0..FAST {
                manager.send(&dest, tick("b", "fast", n)).await.unwrap();
            }
        })
    };

    within(Duration::from_secs(20), "every fast tick", async {
        for n in 0..FAST {
            assert_eq!(fast_handled.recv().await, Some(n));
        }
    })
    .await;
    let fast_done = started.elapsed();
    within(Duration::from_secs(5), "the fast sender", fast_sender)
        .await
        .unwrap();
    assert!(
        slow_handled.try_recv().is_err(),
        "the slow recipient handled a tick before it was released"
    );
    assert!(
        !slow_sender.is_finished(),
        "the slow flow's sender must be held back by credit"
    );
    assert!(
        slow.mailbox().unwrap().depth() >= 7,
        "the slow mailbox is full"
    );

    gate.send(true).unwrap();
    within(Duration::from_secs(20), "every slow tick", async {
        for n in 0..SLOW {
            assert_eq!(slow_handled.recv().await, Some(n));
        }
    })
    .await;
    let slow_done = started.elapsed();
    let slow_sent = within(Duration::from_secs(5), "the slow sender", slow_sender)
        .await
        .unwrap();
    println!(
        "fast recipient: {FAST} ticks in {fast_done:?} while the slow one was blocked; \
         slow recipient: {SLOW} ticks done {slow_done:?} after the start \
         (its sender finished at {slow_sent:?})"
    );
    let _connection = server.await.unwrap();
}

/// Answers every ask with its tick, at once.
struct Echo;

impl Actor for Echo {}

impl Handler<Tick> for Echo {
    type Reply = u64;
    async fn handle(&mut self, Tick(n): Tick, _ctx: &mut Context<Self>) -> u64 {
        n
    }
}

/// Handles each tick slowly: sleeps `pause` first.
struct Sleepy {
    pause: Duration,
    handled: mpsc::UnboundedSender<u64>,
}

impl Actor for Sleepy {}

impl Handler<Tick> for Sleepy {
    type Reply = ();
    async fn handle(&mut self, Tick(n): Tick, _ctx: &mut Context<Self>) {
        tokio::time::sleep(self.pause).await;
        let _ = self.handled.send(n);
    }
}

/// Scenario R9, scaled down: actor `a` sleeps 20 ms per tick and is sent 2,000 tells,
/// actor `b` answers asks at once; 1,000 sequential asks to `b` on the same TCP
/// connection are all answered while `a` is still working through its first tells, and
/// `a`'s sender meets a spent window (`try_send` refuses with no credit) instead of
/// growing a queue: what `a` holds (mailbox plus flow queue) never exceeds its mailbox
/// plus one window. Prints the ask latencies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_asks_to_a_fast_actor_are_not_held_behind_a_slow_one() {
    const TELLS: u64 = 2_000;
    const ASKS: u64 = 1_000;
    const WINDOW: u32 = 64;
    let proc = Proc::new(ProcId::new("peer", 1));
    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let a = proc
        .spawn_with(
            "a",
            Sleepy {
                pause: Duration::from_millis(20),
                handled: handled_tx,
            },
            Mailbox::Bounded(16),
        )
        .unwrap();
    let b = proc.spawn("b", Echo).unwrap();
    proc.expose(&a, RemoteHandlers::new().tell::<Tick>())
        .unwrap();
    proc.expose(&b, RemoteHandlers::new().ask::<Tick>())
        .unwrap();
    let gauges = HashMap::from([
        ("a".to_owned(), a.mailbox().unwrap()),
        ("b".to_owned(), b.mailbox().unwrap()),
    ]);
    let window = FlowConfig {
        window_messages: WINDOW,
        ..FlowConfig::default()
    };
    let (location, server) = serve(proc.clone(), gauges, window).await;
    let manager = Arc::new(manager(
        TcpWireBuilder::new(TcpConfig::default()),
        config(2_000, 60_000),
    ));
    let dest = Dest::new(location);
    // Connects first.
    manager.send(&dest, tick("warm", "b", 0)).await.unwrap();

    // `a`'s sender: `send` waits for credit once the window is spent.
    let tells = {
        let (manager, dest) = (manager.clone(), dest.clone());
        tokio::spawn(async move {
            for n in 0..TELLS {
                manager.send(&dest, tick("sender", "a", n)).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!tells.is_finished(), "a's sender must wait for credit");

    let mut latencies = Vec::with_capacity(ASKS as usize);
    within(Duration::from_secs(30), "every ask answered", async {
        for n in 0..ASKS {
            let asked = Instant::now();
            let response = manager
                .request(&dest, tick("asker", "b", n), Duration::from_secs(5))
                .await
                .unwrap();
            latencies.push(asked.elapsed());
            assert_eq!(postcard::from_bytes::<u64>(&response.payload).unwrap(), n);
        }
    })
    .await;
    let mut done = 0;
    while handled.try_recv().is_ok() {
        done += 1;
    }
    assert!(
        done < TELLS / 2,
        "a handled {done} tells: it was not slow enough to matter"
    );
    assert!(
        !tells.is_finished(),
        "a's sender is still held back by credit"
    );
    // The window bounds what `a` holds: its mailbox, plus at most one window of tells
    // queued in its flow or in flight.
    assert!(a.mailbox().unwrap().depth() <= 16);

    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "R9: {ASKS} asks to b answered (p50 {p50:?}, p99 {p99:?}) while a handled {done} of {TELLS} tells"
    );
    tells.abort();
    let _server = server.await.unwrap();
}
