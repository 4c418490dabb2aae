//! TCP wires: dialed with `TCP_NODELAY` and optional socket buffer sizes.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use plexus_core::Location;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::{DEFAULT_CONNECT_TIMEOUT, Wire, WireBuilder, WireError, WireListener, open_all};
use crate::Dest;

/// Settings of a [`TcpWireBuilder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// How long one wire may take to open. Default [`DEFAULT_CONNECT_TIMEOUT`] (5 s); a
    /// `connect` of `wires_per_dest` wires may take up to that many timeouts.
    pub connect_timeout: Duration,
    /// `SO_SNDBUF` in bytes; `None` (the default) keeps the operating system's choice,
    /// which the kernel may round or cap.
    pub send_buffer_size: Option<u32>,
    /// `SO_RCVBUF` in bytes; `None` (the default) keeps the operating system's choice.
    pub recv_buffer_size: Option<u32>,
    /// How many wires one `connect` opens. Default 1; 0 acts as 1.
    pub wires_per_dest: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            send_buffer_size: None,
            recv_buffer_size: None,
            wires_per_dest: 1,
        }
    }
}

/// Dials `tcp://` destinations. Every wire has `TCP_NODELAY` set, because the writer
/// batches envelopes itself and Nagle's delay would only add latency to small asks.
///
/// ```
/// use plexus_transport::{Dest, TcpConfig, TcpWireBuilder, TcpWireListener, WireBuilder, WireListener};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), plexus_transport::WireError> {
/// let mut listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap()).await?;
/// let dest = Dest::new(listener.location().clone());
/// let builder = TcpWireBuilder::new(TcpConfig::default());
/// let (dialed, accepted) = tokio::join!(builder.connect(&dest), listener.accept());
/// assert_eq!(dialed?[0].peer(), dest.to_string());
/// accepted?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct TcpWireBuilder {
    config: TcpConfig,
}

impl TcpWireBuilder {
    /// A builder with these settings.
    pub fn new(config: TcpConfig) -> Self {
        TcpWireBuilder { config }
    }

    /// The settings.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    async fn open(&self, dest: &Dest, addr: SocketAddr) -> Result<Wire, WireError> {
        let connect_error = |source| WireError::Connect {
            dest: dest.clone(),
            source,
        };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(connect_error)?;
        socket.set_nodelay(true).map_err(connect_error)?;
        if let Some(size) = self.config.send_buffer_size {
            socket.set_send_buffer_size(size).map_err(connect_error)?;
        }
        if let Some(size) = self.config.recv_buffer_size {
            socket.set_recv_buffer_size(size).map_err(connect_error)?;
        }
        let timeout = self.config.connect_timeout;
        let stream = match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(connect_error(source)),
            Err(_) => {
                return Err(WireError::Timeout {
                    dest: dest.clone(),
                    timeout,
                });
            }
        };
        tracing::debug!(%dest, local = ?stream.local_addr().ok(), "tcp wire open");
        Ok(Wire::new(stream, dest.to_string()))
    }
}

#[async_trait]
impl WireBuilder for TcpWireBuilder {
    async fn connect(&self, dest: &Dest) -> Result<Vec<Wire>, WireError> {
        let Location::Tcp(addr) = dest.location() else {
            return Err(WireError::Unsupported {
                dest: dest.clone(),
                builder: "tcp",
            });
        };
        let addr = *addr;
        open_all(self.config.wires_per_dest, || self.open(dest, addr)).await
    }
}

/// Accepts TCP wires. Accepted streams get `TCP_NODELAY` too.
#[derive(Debug)]
pub struct TcpWireListener {
    listener: TcpListener,
    location: Location,
}

impl TcpWireListener {
    /// Listens on `addr`; port 0 picks a free port, which [`location`](WireListener::location)
    /// then reports.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled `bind` leaves nothing bound.
    pub async fn bind(addr: SocketAddr) -> Result<Self, WireError> {
        let bind_error = |source| WireError::Bind {
            location: Location::Tcp(addr),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(TcpWireListener {
            listener,
            location: Location::Tcp(local),
        })
    }

    fn wire(stream: TcpStream, peer: SocketAddr) -> Wire {
        // A failure here only costs latency, so it is logged and the wire kept.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%peer, %error, "setting TCP_NODELAY on an accepted wire failed");
        }
        Wire::new(stream, Location::Tcp(peer).to_string())
    }
}

#[async_trait]
impl WireListener for TcpWireListener {
    fn location(&self) -> &Location {
        &self.location
    }

    async fn accept(&mut self) -> Result<Wire, WireError> {
        let (stream, peer) = self
            .listener
            .accept()
            .await
            .map_err(|source| WireError::Accept {
                location: self.location.clone(),
                source,
            })?;
        tracing::debug!(location = %self.location, %peer, "tcp wire accepted");
        Ok(Self::wire(stream, peer))
    }
}
