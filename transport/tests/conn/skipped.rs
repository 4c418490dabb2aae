//! Bad input from the peer: an undecodable envelope is skipped, a malformed frame closes.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use plexus_codec::{CodecConfig, Decoded, EnvelopeKind, FrameDecoder, FrameEncoder, Outcome};
use plexus_transport::{ConnectionConfig, ConnectionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Num, connection_and_raw_peer, num, within};

/// One frame holding one envelope body given as raw bytes.
fn raw_frame(envelope: &[u8]) -> BytesMut {
    let mut frame = BytesMut::new();
    // Body: the envelope's one-byte length prefix and the envelope, after the flags byte.
    frame.put_u32_le(envelope.len() as u32 + 2);
    frame.put_u8(0);
    frame.put_u8(envelope.len() as u8);
    frame.put_slice(envelope);
    frame
}

/// Reads from `peer` until the decoder yields a response, skipping pings.
async fn next_response(peer: &mut TcpStream, decoder: &mut FrameDecoder) -> EnvelopeKind {
    let mut buf = [0u8; 4096];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        while let Some(decoded) = decoder.next().unwrap() {
            let Decoded::Envelope(envelope) = decoded else {
                panic!("the connection sent an undecodable envelope");
            };
            if let EnvelopeKind::Response { .. } = envelope.kind {
                return envelope.kind;
            }
        }
        if pending.is_empty() {
            let n = peer.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed");
            pending.extend_from_slice(&buf[..n]);
        }
        let used = decoder.feed(&pending);
        pending.drain(..used);
    }
}

/// A request whose message name does not decode is answered `Failed` with its id, and the
/// connection goes on to deliver the next envelope.
#[tokio::test]
async fn an_undecodable_request_is_answered_failed_and_the_connection_continues() {
    let (handle, mut rx, mut peer) = connection_and_raw_peer(ConnectionConfig::default()).await;
    // A request (id 5) to group "g" whose name is interned id 40, never defined.
    let request: &[u8] = &[0x41, 7, 0, 1, b'g', 5, 42, 0xaa, 0xbb];
    peer.write_all(&raw_frame(request)).await.unwrap();

    let mut decoder = FrameDecoder::new(CodecConfig::default());
    let kind = within(
        Duration::from_secs(5),
        "the failed response",
        next_response(&mut peer, &mut decoder),
    )
    .await;
    assert_eq!(
        kind,
        EnvelopeKind::Response {
            id: 5,
            outcome: Outcome::Failed,
            is_last: true
        }
    );

    let mut encoder = FrameEncoder::new(CodecConfig::default());
    encoder.push(&num(7)).unwrap();
    peer.write_all(&encoder.finish()).await.unwrap();
    let delivered = within(Duration::from_secs(5), "the next envelope", rx.recv())
        .await
        .unwrap();
    assert_eq!(delivered.decode_as::<Num>().unwrap(), Num(7));
    assert!(
        handle.close_reason().is_none(),
        "{:?}",
        handle.close_reason()
    );
    assert_eq!(handle.stats().envelopes_received, 2);
}

/// A frame with undefined flag bits closes the connection with a `Malformed` error that
/// says what is wrong.
#[tokio::test]
async fn a_malformed_frame_closes_the_connection_with_a_clear_error() {
    let (handle, _rx, mut peer) = connection_and_raw_peer(ConnectionConfig::default()).await;
    peer.write_all(&[1, 0, 0, 0, 0x80]).await.unwrap();
    let reason = within(Duration::from_secs(5), "the close", handle.closed()).await;
    assert!(
        matches!(reason, ConnectionError::Malformed(_)),
        "{reason:?}"
    );
    let message = reason.to_string();
    assert!(message.contains("unknown frame flags 0x80"), "{message}");
}
