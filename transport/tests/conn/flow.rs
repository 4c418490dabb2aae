//! Flow control on a live connection: credit bounds a blocked flow, comes back as the
//! recipient drains, closes with a gone recipient, and is released by skipped envelopes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_codec::{
    CodecConfig, Decoded, EnvelopeKind, FrameDecoder, NetworkEnvelope, Outcome, Recipient,
};
use plexus_core::{ActorId, ProcId};
use plexus_transport::{
    ConnectionConfig, ConnectionHandle, FlowConfig, FlowError, FlowTarget, Hello, Refused,
    RequestError, Room, SendError, TrySendError, perform_handshake, spawn_connection,
    spawn_connection_with_flow,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::{HANDSHAKE_TIMEOUT, Num, fast_config, tcp_pair, within};

/// Local recipients with bounded mailboxes: a recipient without a mailbox is gone.
#[derive(Default)]
struct Mailboxes {
    senders: Mutex<HashMap<Recipient, mpsc::Sender<NetworkEnvelope>>>,
}

impl Mailboxes {
    /// Adds recipient `name` with room for `capacity` envelopes.
    fn add(&self, name: &str, capacity: usize) -> mpsc::Receiver<NetworkEnvelope> {
        let (tx, rx) = mpsc::channel(capacity);
        self.senders.lock().unwrap().insert(recipient(name), tx);
        rx
    }

    fn sender(&self, recipient: &Recipient) -> Option<mpsc::Sender<NetworkEnvelope>> {
        self.senders.lock().unwrap().get(recipient).cloned()
    }
}

impl FlowTarget for Mailboxes {
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
        let Some(sender) = self.sender(&envelope.recipient) else {
            return Err(Refused::Gone(envelope));
        };
        sender.try_send(envelope).map_err(|error| match error {
            mpsc::error::TrySendError::Full(envelope) => Refused::Full(envelope),
            mpsc::error::TrySendError::Closed(envelope) => Refused::Gone(envelope),
        })
    }

    async fn wait_for_room(&self, recipient: &Recipient) -> Room {
        // Polls: a test mailbox has no room notification.
        loop {
            match self.sender(recipient) {
                None => return Room::Gone,
                Some(sender) if sender.is_closed() => return Room::Gone,
                Some(sender) if sender.capacity() > 0 => return Room::Available,
                Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
}

/// The recipient actor `name` of proc `b`.
fn recipient(name: &str) -> Recipient {
    Recipient::Actor(ActorId::new(ProcId::new("b", 1), name, 0))
}

/// A tell of `Num(n)` from actor `from` of proc `a` to `name`.
fn tell(from: &str, name: &str, n: u64) -> NetworkEnvelope {
    let sender = ActorId::new(ProcId::new("a", 1), from, 0);
    NetworkEnvelope::message(
        Some(sender),
        recipient(name),
        EnvelopeKind::Regular,
        &Num(n),
    )
    .unwrap()
}

/// A window of `messages` envelopes, credit granted back at half of it.
fn window(messages: u32) -> FlowConfig {
    FlowConfig {
        window_messages: messages,
        ..FlowConfig::default()
    }
}

/// A connection from `a` to `b` over loopback TCP where `b` runs flow control over
/// `target` with `flow`; `a`'s inbound envelopes are dropped.
async fn flow_pair(
    flow: FlowConfig,
    target: Arc<Mailboxes>,
    config: ConnectionConfig,
) -> (ConnectionHandle, ConnectionHandle) {
    let (mut a, mut b) = tcp_pair().await;
    let (na, nb) = tokio::join!(
        perform_handshake(
            &mut a,
            Hello::new(ProcId::new("a", 1), 1),
            HANDSHAKE_TIMEOUT
        ),
        perform_handshake(
            &mut b,
            Hello::new(ProcId::new("b", 1), 2).with_flow(flow),
            HANDSHAKE_TIMEOUT
        ),
    );
    let a = spawn_connection(a, na.unwrap(), config.clone(), |_| {}).unwrap();
    let b = spawn_connection_with_flow(b, nb.unwrap(), config, |_| {}, target).unwrap();
    (a, b)
}

/// Receives the next envelope of `mailbox`, failing the test after 5 s.
async fn next(mailbox: &mut mpsc::Receiver<NetworkEnvelope>) -> u64 {
    let envelope = within(Duration::from_secs(5), "an envelope", mailbox.recv())
        .await
        .unwrap();
    envelope.decode_as::<Num>().unwrap().0
}

/// With a window of 8 and a mailbox of 2 nobody drains, `try_send` takes exactly 8
/// envelopes and then refuses with no credit (handing the envelope back), `send` waits;
/// once the mailbox drains every envelope arrives in order and the window comes back in
/// full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_bounds_a_blocked_flow_and_comes_back_as_it_drains() {
    let target = Arc::new(Mailboxes::default());
    let mut mailbox = target.add("slow", 2);
    let (a, _b) = flow_pair(window(8), target, fast_config(100, 5_000)).await;
    assert!(a.is_flow_controlled());

    for n in 0..8 {
        a.try_send(tell("s", "slow", n)).unwrap();
    }
    let refused = a.try_send(tell("s", "slow", 8)).unwrap_err();
    assert!(refused.is_no_credit(), "{refused:?}");
    assert_eq!(refused.into_envelope().decode_as::<Num>().unwrap(), Num(8));
    assert_eq!(a.credit_for(&tell("s", "slow", 0)).map(|c| c.0), Some(0));
    // Another flow from the same sender has its own window.
    assert_eq!(a.credit_for(&tell("s", "other", 0)).map(|c| c.0), Some(8));

    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for n in 8..100 {
                a.send(tell("s", "slow", n)).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sender.is_finished(), "send must wait for credit");

    for n in 0..100 {
        assert_eq!(next(&mut mailbox).await, n);
    }
    within(Duration::from_secs(5), "the sender finishing", sender)
        .await
        .unwrap();
    within(Duration::from_secs(5), "the full window back", async {
        while a.credit_for(&tell("s", "slow", 0)).map(|c| c.0) != Some(8) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Tells to a recipient that is gone close its flow: the peer sends `FlowClose`, later
/// sends on the flow fail with `FlowError::Closed` and the envelope back, and a request
/// to it is answered `Failed` instead of waiting for its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_recipient_closes_its_flow() {
    let target = Arc::new(Mailboxes::default());
    let (a, _b) = flow_pair(window(8), target, ConnectionConfig::default()).await;
    a.send(tell("s", "ghost", 0)).await.unwrap();
    let refused = within(Duration::from_secs(5), "the flow closing", async {
        loop {
            match a.try_send(tell("s", "ghost", 1)) {
                Err(TrySendError::Flow {
                    error: FlowError::Closed { .. },
                    envelope,
                }) => return envelope,
                Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(refused.decode_as::<Num>().unwrap(), Num(1));
    assert!(matches!(
        a.send(tell("s", "ghost", 2)).await,
        Err(SendError::Flow {
            error: FlowError::Closed { .. },
            ..
        })
    ));

    let asked = a
        .request(tell("asker", "ghost", 3), Duration::from_secs(30))
        .await;
    assert!(
        matches!(asked, Err(RequestError::Failed { .. })),
        "{asked:?}"
    );
}

/// A full flow holds back neither another flow nor the response to a request on it:
/// with the slow recipient's window spent, a request to a second recipient is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_flow_holds_back_no_other_flow() {
    let target = Arc::new(Mailboxes::default());
    let _slow = target.add("slow", 1);
    let mut fast = target.add("fast", 16);
    let (a, b) = flow_pair(window(4), target, ConnectionConfig::default()).await;
    for n in 0..4 {
        a.send(tell("s", "slow", n)).await.unwrap();
    }
    assert!(a.try_send(tell("s", "slow", 4)).unwrap_err().is_no_credit());

    let answer = tokio::spawn(async move {
        let request = within(Duration::from_secs(5), "the request", fast.recv())
            .await
            .unwrap();
        let id = request.kind.request_id().unwrap();
        let response = EnvelopeKind::Response {
            id,
            outcome: Outcome::Ok,
            is_last: true,
        };
        b.send(NetworkEnvelope::control(response)).await.unwrap();
        b
    });
    let response = a
        .request(tell("s", "fast", 9), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(response.kind, EnvelopeKind::Response { .. }));
    let _b = answer.await.unwrap();
}

/// Envelopes that do not decode still give their credit back: a raw peer sends five
/// undecodable requests on a flow whose window is two, and the connection answers each
/// `Failed`, grants credit back, and stays open instead of counting a credit violation.
#[tokio::test]
async fn skipped_envelopes_release_their_credit() {
    let (mut a, mut peer) = tcp_pair().await;
    let hello = Hello::new(ProcId::new("a", 1), 1).with_flow(window(2));
    let (na, _) = tokio::join!(
        perform_handshake(&mut a, hello, HANDSHAKE_TIMEOUT),
        perform_handshake(
            &mut peer,
            Hello::new(ProcId::new("b", 1), 2),
            HANDSHAKE_TIMEOUT
        ),
    );
    let target = Arc::new(Mailboxes::default());
    let a = spawn_connection_with_flow(a, na.unwrap(), ConnectionConfig::default(), |_| {}, target)
        .unwrap();

    // A request (id 5) to group "g" whose name is interned id 40, never defined.
    let request: &[u8] = &[0x41, 7, 0, 1, b'g', 5, 42, 0xaa, 0xbb];
    for _ in 0..5 {
        peer.write_all(&crate::skipped_frame(request))
            .await
            .unwrap();
    }
    let mut decoder = FrameDecoder::new(CodecConfig::default());
    let (mut failed, mut credit) = (0, 0);
    let mut buf = [0u8; 4096];
    within(
        Duration::from_secs(5),
        "five answers and their credit",
        async {
            while failed < 5 || credit < 5 {
                let n = peer.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed");
                let mut input = &buf[..n];
                loop {
                    while let Some(decoded) = decoder.next().unwrap() {
                        let Decoded::Envelope(envelope) = decoded else {
                            panic!("undecodable envelope from the connection");
                        };
                        match envelope.kind {
                            EnvelopeKind::Response {
                                outcome: Outcome::Failed,
                                ..
                            } => failed += 1,
                            EnvelopeKind::Credit { messages, .. } => credit += messages,
                            _ => {}
                        }
                    }
                    if input.is_empty() {
                        break;
                    }
                    let used = decoder.feed(input);
                    input = &input[used..];
                }
            }
        },
    )
    .await;
    assert!(a.close_reason().is_none(), "{:?}", a.close_reason());
}
