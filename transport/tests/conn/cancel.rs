//! Cancel safety of the frame writer and reader (reliability scenario R14): a stream that
//! stops the connection's writes and reads at every possible point, and sends dropped at
//! every point they can wait, still leave a stream that decodes, in order, with nothing
//! half-sent.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use plexus_transport::{ConnectionConfig, TrySendError};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf, duplex};

use crate::{Num, connect, num, shake, within};

/// A stream that moves at most `chunk` bytes per read or write, answers every other write
/// `Pending` (waking itself, as a busy socket would later), and holds every write while
/// `stalled` is set.
struct Choppy {
    inner: DuplexStream,
    chunk: usize,
    writes: u64,
    stall: Arc<Stall>,
}

/// Holds a [`Choppy`] stream's writes until released.
#[derive(Default)]
struct Stall {
    stalled: AtomicBool,
    waiting: Mutex<Option<Waker>>,
}

impl Stall {
    fn hold(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    fn release(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        if let Some(waker) = self.waiting.lock().unwrap().take() {
            waker.wake();
        }
    }

    /// Whether writes must wait now; registers `cx` to be woken on release if so.
    fn holds(&self, cx: &Context<'_>) -> bool {
        if !self.stalled.load(Ordering::SeqCst) {
            return false;
        }
        *self.waiting.lock().unwrap() = Some(cx.waker().clone());
        // Released between the check and the registration: go on.
        self.stalled.load(Ordering::SeqCst)
    }
}

impl Choppy {
    fn new(inner: DuplexStream, chunk: usize) -> Self {
        Choppy {
            inner,
            chunk,
            writes: 0,
            stall: Arc::default(),
        }
    }
}

impl AsyncRead for Choppy {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let limit = buf.remaining().min(self.chunk);
        let mut small = ReadBuf::new(buf.initialize_unfilled_to(limit));
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut small))?;
        let read = small.filled().len();
        buf.advance(read);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Choppy {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.stall.holds(cx) {
            return Poll::Pending;
        }
        self.writes += 1;
        if self.writes % 2 == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let limit = buf.len().min(self.chunk);
        Pin::new(&mut self.inner).poll_write(cx, &buf[..limit])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Writes and reads cut at every size from 1 to 24 bytes, with a `Pending` between every
/// two writes, so the writer stops inside length prefixes, headers and payloads, and the
/// reader gets every frame in pieces: both ways, every envelope arrives whole and in order.
#[tokio::test]
async fn writes_and_reads_cut_anywhere_still_decode_in_order() {
    const EACH_WAY: u64 = 60;
    for chunk in 1..=24 {
        let (a, b) = duplex(64 * 1024);
        let (mut a, mut b) = (Choppy::new(a, chunk), Choppy::new(b, chunk));
        let (na, nb) = shake(&mut a, &mut b).await;
        let (ha, mut rx_a) = connect(a, na, ConnectionConfig::default());
        let (hb, mut rx_b) = connect(b, nb, ConnectionConfig::default());
        for n in 0..EACH_WAY {
            ha.send(num(n)).await.unwrap();
            hb.send(num(n)).await.unwrap();
        }
        within(
            Duration::from_secs(10),
            &format!("every envelope with {chunk}-byte pieces"),
            async {
                for n in 0..EACH_WAY {
                    let at_b = rx_b.recv().await.unwrap();
                    assert_eq!(at_b.decode_as::<Num>().unwrap(), Num(n), "chunk {chunk}");
                    let at_a = rx_a.recv().await.unwrap();
                    assert_eq!(at_a.decode_as::<Num>().unwrap(), Num(n), "chunk {chunk}");
                }
            },
        )
        .await;
    }
}

/// With the stream held and the send queue full, a send waits; dropped after each number
/// of polls from 0 to 5, it queues nothing. Once the stream moves again, exactly the
/// envelopes whose sends completed arrive, in order, and the connection still carries
/// traffic, so no dropped send left part of a frame behind.
#[tokio::test]
async fn a_send_dropped_at_any_point_leaves_nothing_behind() {
    let (a, b) = duplex(64 * 1024);
    let (mut a, mut b) = (Choppy::new(a, 7), Choppy::new(b, 7));
    let (na, nb) = shake(&mut a, &mut b).await;
    let stall = Arc::clone(&a.stall);
    let config = ConnectionConfig {
        queue_capacity: 4,
        ..ConnectionConfig::default()
    };
    let (ha, _rx_a) = connect(a, na, config);
    let (_hb, mut rx_b) = connect(b, nb, ConnectionConfig::default());

    stall.hold();
    let mut sent = Vec::new();
    let mut n = 0;
    // Fill whatever the connection takes without waiting: the writer's hands and the queue.
    loop {
        match ha.try_send(num(n)) {
            Ok(()) => sent.push(n),
            Err(TrySendError::Full(_)) => break,
            Err(other) => panic!("unexpected refusal: {other}"),
        }
        n += 1;
        assert!(n < 10_000, "the queue never filled");
    }
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for polls in 0..=5 {
        n += 1;
        let mut send = pin!(ha.send(num(n)));
        for _ in 0..polls {
            assert!(
                send.as_mut().poll(&mut cx).is_pending(),
                "a send completed while the stream was held"
            );
        }
        // Dropped here, after `polls` polls.
    }
    stall.release();
    let last = n + 1;
    ha.send(num(last)).await.unwrap();
    sent.push(last);

    let received = within(Duration::from_secs(10), "the last envelope", async {
        let mut received = Vec::new();
        loop {
            let Num(n) = rx_b.recv().await.unwrap().decode_as::<Num>().unwrap();
            received.push(n);
            if n == last {
                break received;
            }
        }
    })
    .await;
    assert_eq!(received, sent, "dropped sends must not arrive");
}
