//! Wires: bidirectional byte streams to a [`Dest`], and the builders and listeners that
//! make them.
//!
//! A [`WireBuilder`] dials a destination and returns every wire it opened; a
//! [`WireListener`] accepts the other ends. Built in:
//!
//! | Location          | Builder              | Listener             |
//! |-------------------|----------------------|----------------------|
//! | `tcp://addr`      | [`TcpWireBuilder`]   | [`TcpWireListener`]  |
//! | `unix://path`     | `UnixWireBuilder` (feature `unix`) | `UnixWireListener` (feature `unix`) |
//! | `local:n`         | [`InprocNetwork`]    | [`InprocListener`]   |
//!
//! A builder returns a `Vec` rather than one wire per call so that a destination can be
//! served by several wires opened together (each built-in has a `wires_per_dest`
//! setting, default 1), and so that a failure to open any of them fails the whole attempt
//! instead of leaving a half-built set behind.

mod inproc;
mod tcp;
#[cfg(all(unix, feature = "unix"))]
mod unix;

use std::any::Any;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use plexus_core::Location;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Dest;

pub use inproc::{InprocConfig, InprocListener, InprocNetwork};
pub use tcp::{TcpConfig, TcpWireBuilder, TcpWireListener};
#[cfg(all(unix, feature = "unix"))]
pub use unix::{UnixConfig, UnixWireBuilder, UnixWireListener};

/// The default time a built-in builder waits for one wire to open: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The byte stream inside a [`Wire`]: anything readable and writable that can move
/// between tasks.
///
/// Implemented for every such type; its methods let the connection recognise the
/// streams it can split without a lock.
pub trait WireIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The stream, to ask for its concrete type.
    fn as_any(&self) -> &dyn Any;
    /// The stream, to take it out as its concrete type.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> WireIo for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// The reading half of a stream split by [`split_stream`].
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a stream split by [`split_stream`].
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits `stream` into halves a reader task and a writer task can use at once.
///
/// TCP and unix streams (bare, or inside a [`Wire`]) split into their owned halves, which
/// need no lock: the generic [`tokio::io::split`] puts the stream behind a mutex that
/// every read and write takes, and with the reader and the writer on two threads the
/// two contended for it (it showed in the `remote_ask` profile). Any other stream is
/// split by [`tokio::io::split`].
pub(crate) fn split_stream<S>(stream: S) -> (ReadHalf, WriteHalf)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    // `(*io)` below: `Box<dyn WireIo>` is itself a `WireIo`, and `io.as_any()` would
    // describe the box rather than the stream in it.
    let io: Box<dyn WireIo> = Box::new(stream);
    let io = if (*io).as_any().is::<Wire>() {
        match io.into_any().downcast::<Wire>() {
            Ok(wire) => wire.io,
            Err(_) => unreachable!("a stream that is a Wire downcasts to a Wire"),
        }
    } else {
        io
    };
    if (*io).as_any().is::<tokio::net::TcpStream>() {
        match io.into_any().downcast::<tokio::net::TcpStream>() {
            Ok(tcp) => {
                let (read, write) = tcp.into_split();
                return (Box::new(read), Box::new(write));
            }
            Err(_) => unreachable!("a stream that is a TcpStream downcasts to one"),
        }
    }
    #[cfg(all(unix, feature = "unix"))]
    if (*io).as_any().is::<tokio::net::UnixStream>() {
        match io.into_any().downcast::<tokio::net::UnixStream>() {
            Ok(unix) => {
                let (read, write) = unix.into_split();
                return (Box::new(read), Box::new(write));
            }
            Err(_) => unreachable!("a stream that is a UnixStream downcasts to one"),
        }
    }
    let (read, write) = tokio::io::split(io);
    (Box::new(read), Box::new(write))
}

/// One bidirectional byte stream to a peer, with a description of that peer.
///
/// A wire reads and writes like the stream inside it; split it with
/// [`tokio::io::split`] to read and write from two tasks.
///
/// # Cancel safety
///
/// A wire's reads and writes have the cancel safety of tokio's `AsyncReadExt::read` and
/// `AsyncWriteExt::write`: a cancelled read consumed nothing, a cancelled write wrote
/// nothing. `write_all` and `read_exact` are not cancel safe.
pub struct Wire {
    io: Box<dyn WireIo>,
    peer: String,
}

impl Wire {
    /// Wraps a stream; `peer` says who is on the other end (for logs and errors).
    pub fn new(io: impl WireIo + 'static, peer: impl Into<String>) -> Self {
        Wire {
            io: Box::new(io),
            peer: peer.into(),
        }
    }

    /// Who is on the other end, e.g. `tcp://127.0.0.1:7000`.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The stream and the peer description.
    pub fn into_parts(self) -> (Box<dyn WireIo>, String) {
        (self.io, self.peer)
    }
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wire").field("peer", &self.peer).finish()
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Opens wires to a destination. Implement it to add a transport (TLS, a test double).
///
/// ```
/// use plexus_core::Location;
/// use plexus_transport::{Dest, InprocNetwork, WireBuilder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), plexus_transport::WireError> {
/// let network = InprocNetwork::new();
/// let _listener = network.bind(1)?;
/// let wires = network.connect(&Dest::new(Location::Local(1))).await?;
/// assert_eq!(wires.len(), 1);
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait WireBuilder: Send + Sync {
    /// Opens the wires to `dest`: at least one, or an error naming `dest`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes any wire it had opened so far; nothing leaks, and a
    /// later call starts afresh.
    async fn connect(&self, dest: &Dest) -> Result<Vec<Wire>, WireError>;
}

/// Accepts the server ends of wires.
#[async_trait]
pub trait WireListener: Send {
    /// The location dialers use to reach this listener.
    fn location(&self) -> &Location;

    /// Waits for the next incoming wire.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled `accept` accepted nothing, and the next call sees the same
    /// queue of pending wires.
    async fn accept(&mut self) -> Result<Wire, WireError>;
}

/// Why a wire could not be opened or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Dialing failed with an I/O error (refused, unreachable, reset).
    #[error("connecting to {dest} failed: {source}")]
    Connect {
        /// Where the wire was to go.
        dest: Dest,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Dialing took longer than the connect timeout.
    #[error("connecting to {dest} timed out after {timeout:?}")]
    Timeout {
        /// Where the wire was to go.
        dest: Dest,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// Nothing listens at an in-process location, or its listener is gone or full.
    #[error("{dest} refused the wire: {reason}")]
    Refused {
        /// Where the wire was to go.
        dest: Dest,
        /// Why, e.g. `no listener is bound`.
        reason: &'static str,
    },
    /// The builder does not speak the destination's scheme.
    #[error("the {builder} wire builder cannot reach {dest}")]
    Unsupported {
        /// The destination of the wrong scheme.
        dest: Dest,
        /// Which builder was asked, e.g. `tcp`.
        builder: &'static str,
    },
    /// A listener could not be bound.
    #[error("binding {location} failed: {source}")]
    Bind {
        /// Where the listener was to be bound.
        location: Location,
        /// The cause; `AddrInUse` for a taken in-process number.
        #[source]
        source: io::Error,
    },
    /// A listener failed to accept.
    #[error("accepting on {location} failed: {source}")]
    Accept {
        /// The listener's location.
        location: Location,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Runs `open` `count` times (at least once) and keeps every wire, or the first error.
/// Dropping the returned future drops the wires opened so far, which closes them.
async fn open_all<F, Fut>(count: usize, mut open: F) -> Result<Vec<Wire>, WireError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Wire, WireError>>,
{
    let count = count.max(1);
    let mut wires = Vec::with_capacity(count);
    for _ in 0..count {
        wires.push(open().await?);
    }
    Ok(wires)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (dialed.unwrap(), accepted.unwrap().0)
    }

    /// Both halves work at once, in both directions, over `ours` whose peer is `theirs`.
    async fn halves_carry_both_ways(
        ours: impl AsyncRead + AsyncWrite + Send + Unpin + 'static,
        mut theirs: impl AsyncRead + AsyncWrite + Unpin,
    ) {
        let (mut read, mut write) = split_stream(ours);
        let reading = tokio::spawn(async move {
            let mut got = [0u8; 5];
            read.read_exact(&mut got).await.unwrap();
            got
        });
        write.write_all(b"ping!").await.unwrap();
        write.flush().await.unwrap();
        let mut got = [0u8; 5];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping!");
        theirs.write_all(b"pong!").await.unwrap();
        let echoed = tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
        assert_eq!(&echoed, b"pong!");
    }

    /// A bare TCP stream, a TCP stream inside a `Wire` (the lock-free owned halves) and
    /// an in-process duplex (the generic split) all split into working halves.
    #[tokio::test]
    async fn split_stream_works_for_known_and_other_streams() {
        let (ours, theirs) = tcp_pair().await;
        halves_carry_both_ways(ours, theirs).await;
        let (ours, theirs) = tcp_pair().await;
        halves_carry_both_ways(Wire::new(ours, "tcp"), theirs).await;
        let (ours, theirs) = tokio::io::duplex(64);
        halves_carry_both_ways(Wire::new(ours, "duplex"), theirs).await;
        let (ours, theirs) = tokio::io::duplex(64);
        halves_carry_both_ways(ours, theirs).await;
    }

    /// `split_stream` recognises a TCP stream through the box and the wire around it.
    #[tokio::test]
    async fn tcp_is_recognised_inside_a_wire() {
        let (ours, _theirs) = tcp_pair().await;
        let io: Box<dyn WireIo> = Box::new(Wire::new(ours, "tcp"));
        assert!((*io).as_any().is::<Wire>());
        assert!(!io.as_any().is::<Wire>(), "the box itself is not the wire");
        let wire = io.into_any().downcast::<Wire>().unwrap();
        assert!((*wire.io).as_any().is::<TcpStream>());
    }
}
