//! Both ends of flow control joined by in-memory channels standing in for a connection:
//! senders spend credit from [`SendFlows`], a reader task feeds a [`FlowReceiver`] whose
//! targets are bounded mailboxes, and credit travels back to the senders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{ActorId, ProcId};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// Local actors with bounded mailboxes; a recipient without a mailbox is gone.
struct Actors {
    mailboxes: HashMap<Recipient, mpsc::Sender<NetworkEnvelope>>,
}

impl FlowTarget for Actors {
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
        let Some(mailbox) = self.mailboxes.get(&envelope.recipient) else {
            return Err(Refused::Gone(envelope));
        };
        mailbox.try_send(envelope).map_err(|error| match error {
            TrySendError::Full(envelope) => Refused::Full(envelope),
            TrySendError::Closed(envelope) => Refused::Gone(envelope),
        })
    }

    async fn wait_for_room(&self, recipient: &Recipient) -> Room {
        let Some(mailbox) = self.mailboxes.get(recipient) else {
            return Room::Gone;
        };
        // Reserving proves there is room; the permit is released at once so that the
        // pusher's own `try_send` can take the slot.
        match mailbox.reserve().await {
            Ok(_permit) => Room::Available,
            Err(_) => Room::Gone,
        }
    }
}

/// The way back to the senders: credit and close envelopes go over a channel, and
/// undeliverable envelopes are counted.
struct Back {
    control: mpsc::UnboundedSender<NetworkEnvelope>,
    undeliverable: Mutex<Vec<u64>>,
}

impl FlowEvents for Back {
    fn send_control(&self, envelope: NetworkEnvelope) {
        let _ = self.control.send(envelope);
    }

    fn undeliverable(&self, envelope: NetworkEnvelope, _reason: &FlowError) {
        self.undeliverable.lock().unwrap().push(envelope.trace_id);
    }
}

fn actor(proc: &str, name: &str) -> ActorId {
    ActorId::new(ProcId::new(proc, 1), name, 0)
}

struct Pair {
    flows: Arc<SendFlows>,
    link: mpsc::UnboundedSender<NetworkEnvelope>,
    receiver: FlowReceiver<Actors, Back>,
}

/// Starts both ends: a reader task that hands every envelope to the receiver, and a task
/// that applies returned credit and closes to the senders' windows.
fn pair(config: FlowConfig, mailboxes: HashMap<Recipient, mpsc::Sender<NetworkEnvelope>>) -> Pair {
    let (link, mut inbound) = mpsc::unbounded_channel::<NetworkEnvelope>();
    let (control, mut back) = mpsc::unbounded_channel();
    let receiver = FlowReceiver::new(
        config.clone(),
        Actors { mailboxes },
        Back {
            control,
            undeliverable: Mutex::new(Vec::new()),
        },
        Handle::current(),
    );
    let flows = Arc::new(SendFlows::new(config));
    let reader = receiver.clone();
    tokio::spawn(async move {
        while let Some(envelope) = inbound.recv().await {
            reader.receive(envelope).unwrap();
        }
    });
    let windows = Arc::clone(&flows);
    tokio::spawn(async move {
        while let Some(envelope) = back.recv().await {
            assert!(windows.handle_control(&envelope));
        }
    });
    Pair {
        flows,
        link,
        receiver,
    }
}

/// Sends `count` tells from `sender` to `recipient`, waiting for credit before each, and
/// counts the ones sent; stops at the first flow error and returns it.
fn spawn_sender(
    pair: &Pair,
    sender: ActorId,
    recipient: Recipient,
    count: u64,
    sent: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Result<(), FlowError>> {
    let flows = Arc::clone(&pair.flows);
    let link = pair.link.clone();
    tokio::spawn(async move {
        let window = flows.window(&plexus_codec::Flow {
            sender: Some(sender.clone()),
            recipient: recipient.clone(),
        });
        for seq in 0..count {
            let envelope = NetworkEnvelope {
                sender: Some(sender.clone()),
                recipient: recipient.clone(),
                kind: EnvelopeKind::Regular,
                name: "test.Tell".into(),
                payload: vec![0; 16].into(),
                ..NetworkEnvelope::control(EnvelopeKind::Regular)
            }
            .with_trace_id(seq);
            window.acquire(envelope_bytes(&envelope)).await?;
            link.send(envelope).unwrap();
            sent.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    })
}

async fn drain_in_order(mailbox: &mut mpsc::Receiver<NetworkEnvelope>, count: u64) {
    for expected in 0..count {
        let envelope = tokio::time::timeout(WAIT, mailbox.recv())
            .await
            .unwrap_or_else(|_| panic!("envelope {expected} never arrived"))
            .expect("mailbox closed");
        assert_eq!(envelope.trace_id, expected, "envelopes out of order");
    }
}

/// A recipient that takes nothing stalls only its own sender, after exactly its window
/// plus its mailbox: another sender on the same link finishes meanwhile, and once the
/// slow recipient reads, its sender resumes and everything arrives in order.
#[tokio::test]
async fn slow_recipient_stalls_only_its_sender() {
    let config = FlowConfig {
        window_messages: 64,
        window_bytes: 1 << 20,
        update_percent: 50,
    };
    let slow = Recipient::Actor(actor("local", "slow"));
    let fast = Recipient::Actor(actor("local", "fast"));
    let (slow_tx, mut slow_rx) = mpsc::channel(4);
    let (fast_tx, mut fast_rx) = mpsc::channel(4);
    let pair = pair(
        config,
        HashMap::from([(slow.clone(), slow_tx), (fast.clone(), fast_tx)]),
    );
    let slow_sent = Arc::new(AtomicUsize::new(0));
    let fast_sent = Arc::new(AtomicUsize::new(0));
    let slow_sender = spawn_sender(
        &pair,
        actor("remote", "a"),
        slow.clone(),
        1000,
        Arc::clone(&slow_sent),
    );
    let fast_sender = spawn_sender(
        &pair,
        actor("remote", "b"),
        fast.clone(),
        1000,
        Arc::clone(&fast_sent),
    );

    drain_in_order(&mut fast_rx, 1000).await;
    tokio::time::timeout(WAIT, fast_sender)
        .await
        .expect("the fast sender did not finish")
        .unwrap()
        .unwrap();

    // The slow flow: 4 envelopes in the mailbox, the rest of the window in its queue, and
    // the 4 consumed are below the update threshold, so no credit came back.
    let slow_flow = plexus_codec::Flow {
        sender: Some(actor("remote", "a")),
        recipient: slow.clone(),
    };
    let receiver = pair.receiver.clone();
    tokio::time::timeout(WAIT, async {
        while receiver.queued(&slow_flow) != 60 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the slow flow's queue did not hold the rest of its window");
    assert_eq!(slow_sent.load(Ordering::SeqCst), 64);
    assert!(!slow_sender.is_finished());

    drain_in_order(&mut slow_rx, 1000).await;
    tokio::time::timeout(WAIT, slow_sender)
        .await
        .expect("the slow sender did not resume")
        .unwrap()
        .unwrap();
}

/// A sender to a recipient that is gone learns it from the flow close and stops with a
/// typed error, and every envelope it managed to send is reported undeliverable.
#[tokio::test]
async fn gone_recipient_closes_the_senders_window() {
    let config = FlowConfig {
        window_messages: 64,
        window_bytes: 1 << 20,
        update_percent: 50,
    };
    let gone = Recipient::Actor(actor("local", "gone"));
    let pair = pair(config, HashMap::new());
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = spawn_sender(
        &pair,
        actor("remote", "a"),
        gone.clone(),
        1_000_000,
        Arc::clone(&sent),
    );
    let outcome = tokio::time::timeout(WAIT, sender)
        .await
        .expect("the sender was never told the recipient is gone")
        .unwrap();
    assert_eq!(outcome, Err(FlowError::Closed { recipient: gone }));
    let receiver = pair.receiver.clone();
    tokio::time::timeout(WAIT, async {
        loop {
            let reported = receiver.events().undeliverable.lock().unwrap().len();
            if reported == sent.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("some sent envelopes were neither delivered nor reported");
    assert!(sent.load(Ordering::SeqCst) <= 64);
}

/// On a multi-threaded runtime, with the reader, the pushers, the senders, slow
/// consumers and the forgetting of idle flows at both ends all racing: every flow's
/// envelopes arrive complete and in order, nothing is reported undeliverable, no flow
/// holds more than its window, and no credit is lost (a lost grant would stall a sender).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_flows_stay_complete_and_ordered() {
    const FLOWS: usize = 4;
    const COUNT: u64 = 2000;
    let config = FlowConfig {
        window_messages: 16,
        window_bytes: 1 << 20,
        update_percent: 50,
    };
    let recipients: Vec<_> = (0..FLOWS)
        .map(|index| Recipient::Actor(actor("local", &format!("r{index}"))))
        .collect();
    let mut mailboxes = HashMap::new();
    let mut consumers = Vec::new();
    for (index, recipient) in recipients.iter().enumerate() {
        let (tx, mut rx) = mpsc::channel::<NetworkEnvelope>(2);
        mailboxes.insert(recipient.clone(), tx);
        consumers.push(tokio::spawn(async move {
            for expected in 0..COUNT {
                let envelope = rx.recv().await.expect("mailbox closed");
                assert_eq!(envelope.trace_id, expected, "flow {index} out of order");
                // Uneven consumers make the recipients fill and drain at different times.
                if expected % (index as u64 + 2) == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let pair = pair(config.clone(), mailboxes);
    let senders: Vec<_> = recipients
        .iter()
        .map(|recipient| {
            spawn_sender(
                &pair,
                actor("remote", "a"),
                recipient.clone(),
                COUNT,
                Arc::new(AtomicUsize::new(0)),
            )
        })
        .collect();
    let receiver = pair.receiver.clone();
    let send_flows = Arc::clone(&pair.flows);
    let watcher = tokio::spawn(async move {
        let flows: Vec<_> = recipients
            .iter()
            .map(|recipient| plexus_codec::Flow {
                sender: Some(actor("remote", "a")),
                recipient: recipient.clone(),
            })
            .collect();
        loop {
            for flow in &flows {
                assert!(receiver.queued(flow) <= config.window_messages as usize);
            }
            receiver.flush_idle();
            send_flows.forget_idle();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    for (index, consumer) in consumers.into_iter().enumerate() {
        tokio::time::timeout(WAIT, consumer)
            .await
            .unwrap_or_else(|_| panic!("flow {index} did not complete"))
            .unwrap();
    }
    for sender in senders {
        tokio::time::timeout(WAIT, sender)
            .await
            .expect("a sender did not finish")
            .unwrap()
            .unwrap();
    }
    assert!(!watcher.is_finished(), "a flow's queue exceeded its window");
    watcher.abort();
    assert!(
        pair.receiver
            .events()
            .undeliverable
            .lock()
            .unwrap()
            .is_empty()
    );
}
