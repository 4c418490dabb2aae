//! In-process wires: `local:n` locations served by `tokio::io::duplex` pairs, for tests and
//! single-binary clusters that still want the full byte path.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use plexus_core::Location;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use super::{Wire, WireBuilder, WireError, WireListener, open_all};
use crate::Dest;

/// Settings of an [`InprocNetwork`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InprocConfig {
    /// Bytes each direction of a duplex pair buffers before a writer waits. Default 64 KiB.
    pub buffer_size: usize,
    /// Wires a listener holds before it accepts them; one more is refused. Default 128.
    pub backlog: usize,
    /// How many wires one `connect` opens. Default 1; 0 acts as 1.
    pub wires_per_dest: usize,
}

impl Default for InprocConfig {
    fn default() -> Self {
        InprocConfig {
            buffer_size: 64 * 1024,
            backlog: 128,
            wires_per_dest: 1,
        }
    }
}

/// A registry of in-process listeners by number, and the [`WireBuilder`] for `local:n`.
///
/// Clones share the registry. A wire to `local:n` is a `tokio::io::duplex` pair whose
/// server half is queued for the listener bound to `n`; with no such listener the dial
/// fails at once with [`WireError::Refused`], as a closed TCP port would.
///
/// ```
/// use plexus_core::Location;
/// use plexus_transport::{Dest, InprocNetwork, WireBuilder, WireListener};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let network = InprocNetwork::new();
/// let mut listener = network.bind(7)?;
/// let mut client = network.connect(&Dest::new(Location::Local(7))).await?.remove(0);
/// let mut server = listener.accept().await?;
/// client.write_all(b"ping").await?;
/// let mut buf = [0; 4];
/// server.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"ping");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct InprocNetwork {
    registry: Arc<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    config: InprocConfig,
    listeners: Mutex<HashMap<u64, mpsc::Sender<DuplexStream>>>,
    dials: AtomicU64,
}

impl Registry {
    fn listeners(&self) -> MutexGuard<'_, HashMap<u64, mpsc::Sender<DuplexStream>>> {
        // The map is consistent after every statement, so a panic elsewhere while the
        // lock was held cannot leave it half-updated.
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl InprocNetwork {
    /// An empty network with default settings.
    pub fn new() -> Self {
        InprocNetwork::with_config(InprocConfig::default())
    }

    /// An empty network with these settings.
    pub fn with_config(config: InprocConfig) -> Self {
        InprocNetwork {
            registry: Arc::new(Registry {
                config,
                listeners: Mutex::new(HashMap::new()),
                dials: AtomicU64::new(0),
            }),
        }
    }

    /// Listens on `local:number` until the listener is dropped.
    ///
    /// A number whose listener is alive gives [`WireError::Bind`] with `AddrInUse`.
    pub fn bind(&self, number: u64) -> Result<InprocListener, WireError> {
        let location = Location::Local(number);
        let mut listeners = self.registry.listeners();
        if listeners.get(&number).is_some_and(|tx| !tx.is_closed()) {
            return Err(WireError::Bind {
                location,
                source: io::Error::new(io::ErrorKind::AddrInUse, "in-process number is bound"),
            });
        }
        let (tx, rx) = mpsc::channel(self.registry.config.backlog.max(1));
        listeners.insert(number, tx);
        drop(listeners);
        tracing::debug!(%location, "in-process listener bound");
        Ok(InprocListener {
            number,
            location,
            incoming: rx,
            registry: Arc::clone(&self.registry),
        })
    }

    /// Whether a live listener is bound to `local:number`.
    pub fn is_bound(&self, number: u64) -> bool {
        self.registry
            .listeners()
            .get(&number)
            .is_some_and(|tx| !tx.is_closed())
    }

    fn open(&self, dest: &Dest, number: u64) -> Result<Wire, WireError> {
        let refused = |reason| WireError::Refused {
            dest: dest.clone(),
            reason,
        };
        let Some(tx) = self.registry.listeners().get(&number).cloned() else {
            return Err(refused("no listener is bound"));
        };
        let (client, server) = tokio::io::duplex(self.registry.config.buffer_size.max(1));
        match tx.try_send(server) {
            Ok(()) => {
                let dial = self.registry.dials.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%dest, dial, "in-process wire open");
                Ok(Wire::new(client, dest.to_string()))
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(refused("the listener's backlog is full"))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(refused("no listener is bound")),
        }
    }
}

#[async_trait]
impl WireBuilder for InprocNetwork {
    async fn connect(&self, dest: &Dest) -> Result<Vec<Wire>, WireError> {
        let Location::Local(number) = dest.location() else {
            return Err(WireError::Unsupported {
                dest: dest.clone(),
                builder: "in-process",
            });
        };
        let number = *number;
        open_all(self.registry.config.wires_per_dest, || async {
            self.open(dest, number)
        })
        .await
    }
}

/// Accepts the server halves of wires dialed to `local:n`. Dropping it unbinds `n`, and
/// wires still queued are closed.
#[derive(Debug)]
pub struct InprocListener {
    number: u64,
    location: Location,
    incoming: mpsc::Receiver<DuplexStream>,
    registry: Arc<Registry>,
}

#[async_trait]
impl WireListener for InprocListener {
    fn location(&self) -> &Location {
        &self.location
    }

    async fn accept(&mut self) -> Result<Wire, WireError> {
        match self.incoming.recv().await {
            Some(stream) => Ok(Wire::new(stream, format!("peer of {}", self.location))),
            // The registry keeps a sender while this listener is bound, so this is only
            // reached if the entry was replaced, which `bind` refuses; kept as an error
            // rather than a panic.
            None => Err(WireError::Accept {
                location: self.location.clone(),
                source: io::Error::new(io::ErrorKind::NotConnected, "listener was unbound"),
            }),
        }
    }
}

impl Drop for InprocListener {
    fn drop(&mut self) {
        // Close first so that the entry reads as closed; a listener bound to the same
        // number since then has a live sender and is left alone.
        self.incoming.close();
        let mut listeners = self.registry.listeners();
        if listeners.get(&self.number).is_some_and(|tx| tx.is_closed()) {
            listeners.remove(&self.number);
        }
    }
}
