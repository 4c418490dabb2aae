//! The handshake over a stream: negotiation, refusals, limits and time bounds.

use std::time::{Duration, Instant};

use plexus_codec::{SUPPORTED_VERSIONS, VersionRange};
use plexus_core::ProcId;
use plexus_transport::{HandshakeError, Hello, MAGIC, MAX_HELLO_SIZE, perform_handshake};
use tokio::io::{AsyncWriteExt, duplex};

use crate::{HANDSHAKE_TIMEOUT, shake, within};

/// Two ends over an in-memory pipe learn each other's identity and launch id and agree on
/// the highest shared version.
#[tokio::test]
async fn two_ends_negotiate_over_a_duplex() {
    let (mut a, mut b) = duplex(4096);
    let (na, nb) = within(Duration::from_secs(5), "handshake", shake(&mut a, &mut b)).await;
    assert_eq!(na.peer, ProcId::new("b", 1));
    assert_eq!(na.peer_launch_id, 2);
    assert_eq!(nb.peer, ProcId::new("a", 1));
    assert_eq!(nb.peer_launch_id, 1);
    assert_eq!(na.version, SUPPORTED_VERSIONS.max);
    assert_eq!(na.version, nb.version);
    assert_eq!(na.capabilities, nb.capabilities);
}

/// Disjoint version ranges fail on both ends, each error naming both ranges.
#[tokio::test]
async fn version_mismatch_names_both_versions() {
    let (mut a, mut b) = duplex(4096);
    let mut future = Hello::new(ProcId::new("a", 1), 1);
    future.versions = VersionRange::new(7, 9);
    let (ra, rb) = tokio::join!(
        perform_handshake(&mut a, future, HANDSHAKE_TIMEOUT),
        perform_handshake(
            &mut b,
            Hello::new(ProcId::new("b", 1), 2),
            HANDSHAKE_TIMEOUT
        ),
    );
    let ra = ra.unwrap_err();
    let rb = rb.unwrap_err();
    assert!(
        matches!(ra, HandshakeError::VersionMismatch { local, remote }
            if local == VersionRange::new(7, 9) && remote == SUPPORTED_VERSIONS),
        "{ra:?}"
    );
    assert!(
        matches!(rb, HandshakeError::VersionMismatch { .. }),
        "{rb:?}"
    );
    for message in [ra.to_string(), rb.to_string()] {
        assert!(message.contains("7..=9"), "{message}");
        assert!(
            message.contains(&SUPPORTED_VERSIONS.to_string()),
            "{message}"
        );
    }
}

/// A peer that does not speak plexus is refused with `BadMagic`.
#[tokio::test]
async fn bad_magic_is_refused() {
    let (mut a, mut b) = duplex(4096);
    b.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let error = perform_handshake(
        &mut a,
        Hello::new(ProcId::new("a", 1), 1),
        HANDSHAKE_TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, HandshakeError::BadMagic { .. }),
        "{error:?}"
    );
}

/// A hello announcing more than the limit is refused from its header alone: the handshake
/// fails at once, without waiting for (or reserving room for) the announced body.
#[tokio::test]
async fn an_oversized_hello_is_refused_without_reading_it() {
    let (mut a, mut b) = duplex(4096);
    b.write_all(&u16::MAX.to_le_bytes()).await.unwrap();
    b.write_all(&MAGIC).await.unwrap();
    // The body never comes: a refusal that waited for it would hit the timeout instead.
    let error = within(
        Duration::from_secs(5),
        "refusal of the oversized hello",
        perform_handshake(
            &mut a,
            Hello::new(ProcId::new("a", 1), 1),
            HANDSHAKE_TIMEOUT,
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, HandshakeError::HelloTooLarge { len: 65535, max } if max == MAX_HELLO_SIZE),
        "{error:?}"
    );
}

/// A peer that never sends its hello makes the handshake fail with `Timeout` after the
/// time allowed, not later.
#[tokio::test]
async fn a_silent_peer_times_out() {
    let (mut a, _b) = duplex(4096);
    let limit = Duration::from_millis(200);
    let start = Instant::now();
    let error = within(
        Duration::from_secs(5),
        "handshake timeout",
        perform_handshake(&mut a, Hello::new(ProcId::new("a", 1), 1), limit),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, HandshakeError::Timeout { after } if after == limit),
        "{error:?}"
    );
    assert!(start.elapsed() >= limit);
}

/// A peer that closes in the middle of its hello fails the handshake with `Eof`.
#[tokio::test]
async fn a_peer_closing_mid_hello_is_eof() {
    let (mut a, mut b) = duplex(4096);
    b.write_all(&Hello::new(ProcId::new("b", 1), 1).encode().unwrap()[..5])
        .await
        .unwrap();
    // Ends the peer's half only, so our own hello can still be written.
    b.shutdown().await.unwrap();
    let error = perform_handshake(
        &mut a,
        Hello::new(ProcId::new("a", 1), 1),
        HANDSHAKE_TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, HandshakeError::Eof { received: 5 }),
        "{error:?}"
    );
}
