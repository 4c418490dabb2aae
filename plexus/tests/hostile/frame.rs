//! R10: an oversized length prefix after the handshake.

use std::time::{Duration, Instant};

use plexus::codec::{
    CodecConfig, CodecError, EnvelopeKind, FrameEncoder, NetworkEnvelope, Recipient,
};
use plexus::transport::{
    ConnectionConfig, ConnectionError, ConnectionHandle, Hello, perform_handshake, spawn_connection,
};
use plexus::{ActorId, ProcId, RemoteMessage};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::{ONE_AT_A_TIME, alloc, within};

/// The table's bound on the heap one oversized prefix may make the process allocate.
const HEAP_BOUND: usize = 64 * 1024;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Probe(u64);

impl RemoteMessage for Probe {
    const NAME: &'static str = "hostile.Probe";
}

/// A connection of proc `a` over loopback TCP, its delivered envelopes, and the raw
/// stream of its peer `b` after the handshake, to misbehave on.
async fn connection_and_raw_peer() -> (
    ConnectionHandle,
    mpsc::UnboundedReceiver<NetworkEnvelope>,
    TcpStream,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (mut a, mut b) = (dialled.unwrap(), accepted.unwrap().0);
    let limit = Duration::from_secs(5);
    let (negotiated, peer) = tokio::join!(
        perform_handshake(&mut a, Hello::new(ProcId::new("a", 1), 1), limit),
        perform_handshake(&mut b, Hello::new(ProcId::new("b", 1), 2), limit),
    );
    peer.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = spawn_connection(
        a,
        negotiated.unwrap(),
        ConnectionConfig::default(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    (handle, rx, b)
}

/// A tell of `Probe(n)` to an actor of proc `a`, framed.
fn probe_frame(n: u64) -> bytes::Bytes {
    let to = ActorId::new(ProcId::new("a", 1), "recipient", 0);
    let envelope =
        NetworkEnvelope::message(None, Recipient::Actor(to), EnvelopeKind::Regular, &Probe(n))
            .unwrap();
    let mut encoder = FrameEncoder::new(CodecConfig::default());
    encoder.push(&envelope).unwrap();
    encoder.finish()
}

/// For a prefix one byte over the limit and for the largest one the prefix can say: the
/// connection closes with `FrameTooLarge` naming both numbers, the process allocates
/// less than 64 KiB for it, and a second connection keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_length_prefix_closes_only_that_connection() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let max = CodecConfig::default().max_frame_size;
    // The allocator does see what is allocated, or the bound below would prove nothing.
    // The count is the whole process's, so another thread freeing memory meanwhile can
    // hide part of the block from one try; one full sighting in a few tries is the proof.
    let sees_a_block = (0..10).any(|_| {
        alloc::reset_peak();
        let before = alloc::live();
        let block = std::hint::black_box(vec![1u8; HEAP_BOUND]);
        let seen = alloc::peak().saturating_sub(before);
        drop(block);
        seen >= HEAP_BOUND
    });
    assert!(
        sees_a_block,
        "the counting allocator never saw a {HEAP_BOUND} B block"
    );
    for declared in [max as u64 + 1, u64::from(u32::MAX)] {
        let (victim, _delivered, mut raw) = connection_and_raw_peer().await;
        let (other, mut other_delivered, mut other_raw) = connection_and_raw_peer().await;
        other_raw.write_all(&probe_frame(1)).await.unwrap();
        let first = within(Duration::from_secs(5), "a probe", other_delivered.recv()).await;
        assert_eq!(first.unwrap().decode_as::<Probe>().unwrap(), Probe(1));

        // Quiet now: what the heap gains from here on is the prefix's doing.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = alloc::live();
        alloc::reset_peak();
        let prefix = u32::try_from(declared).unwrap().to_le_bytes();
        let sent = Instant::now();
        raw.write_all(&prefix).await.unwrap();
        let reason = within(Duration::from_secs(5), "the close", victim.closed()).await;
        let took = sent.elapsed();
        let growth = alloc::peak().saturating_sub(before);
        println!(
            "prefix {declared}: closed in {took:?} (table: 10 ms), heap grew {growth} B at \
             most over {before} B live (table: < {HEAP_BOUND} B): {reason}"
        );
        match &reason {
            ConnectionError::Malformed(CodecError::FrameTooLarge { len, max: limit }) => {
                assert_eq!((*len, *limit), (declared, max));
            }
            other => panic!("closed for another reason: {other:?}"),
        }
        assert!(growth < HEAP_BOUND, "the heap grew {growth} B");
        // Bounded loosely against a busy machine; the figure is printed above.
        assert!(took < Duration::from_millis(500), "closed after {took:?}");

        other_raw.write_all(&probe_frame(2)).await.unwrap();
        let second = within(Duration::from_secs(5), "a probe", other_delivered.recv()).await;
        assert_eq!(second.unwrap().decode_as::<Probe>().unwrap(), Probe(2));
        assert!(other.close_reason().is_none(), "{:?}", other.close_reason());
    }
}
