//! Unix domain socket wires, for peers on one host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use plexus_core::Location;
use tokio::net::{UnixListener, UnixStream};

use super::{DEFAULT_CONNECT_TIMEOUT, Wire, WireBuilder, WireError, WireListener, open_all};
use crate::Dest;

/// Settings of a [`UnixWireBuilder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixConfig {
    /// How long one wire may take to open. Default [`DEFAULT_CONNECT_TIMEOUT`] (5 s).
    pub connect_timeout: Duration,
    /// How many wires one `connect` opens. Default 1; 0 acts as 1.
    pub wires_per_dest: usize,
}

impl Default for UnixConfig {
    fn default() -> Self {
        UnixConfig {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            wires_per_dest: 1,
        }
    }
}

/// Dials `unix://` destinations.
///
/// ```
/// use plexus_transport::{Dest, UnixConfig, UnixWireBuilder, UnixWireListener, WireBuilder, WireListener};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("plexus-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("gateway.sock");
/// let _ = std::fs::remove_file(&path);
/// let mut listener = UnixWireListener::bind(&path)?;
/// let dest = Dest::new(listener.location().clone());
/// let builder = UnixWireBuilder::new(UnixConfig::default());
/// let (dialed, accepted) = tokio::join!(builder.connect(&dest), listener.accept());
/// assert_eq!(dialed?.len(), 1);
/// accepted?;
/// std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "unix")))]
#[derive(Clone, Debug, Default)]
pub struct UnixWireBuilder {
    config: UnixConfig,
}

impl UnixWireBuilder {
    /// A builder with these settings.
    pub fn new(config: UnixConfig) -> Self {
        UnixWireBuilder { config }
    }

    /// The settings.
    pub fn config(&self) -> &UnixConfig {
        &self.config
    }

    async fn open(&self, dest: &Dest, path: &Path) -> Result<Wire, WireError> {
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
            Ok(Ok(stream)) => {
                tracing::debug!(%dest, "unix wire open");
                Ok(Wire::new(stream, dest.to_string()))
            }
            Ok(Err(source)) => Err(WireError::Connect {
                dest: dest.clone(),
                source,
            }),
            Err(_) => Err(WireError::Timeout {
                dest: dest.clone(),
                timeout,
            }),
        }
    }
}

#[async_trait]
impl WireBuilder for UnixWireBuilder {
    async fn connect(&self, dest: &Dest) -> Result<Vec<Wire>, WireError> {
        let Location::Unix(path) = dest.location() else {
            return Err(WireError::Unsupported {
                dest: dest.clone(),
                builder: "unix",
            });
        };
        open_all(self.config.wires_per_dest, || self.open(dest, path)).await
    }
}

/// Accepts unix socket wires.
///
/// The socket file stays after the listener is dropped, as with any unix socket; remove
/// it (or its directory) when done, and before binding the same path again.
#[cfg_attr(docsrs, doc(cfg(feature = "unix")))]
#[derive(Debug)]
pub struct UnixWireListener {
    listener: UnixListener,
    location: Location,
}

impl UnixWireListener {
    /// Listens on the socket file at `path`, which must not exist yet.
    pub fn bind(path: impl Into<PathBuf>) -> Result<Self, WireError> {
        let path = path.into();
        let listener = UnixListener::bind(&path).map_err(|source| WireError::Bind {
            location: Location::Unix(path.clone()),
            source,
        })?;
        Ok(UnixWireListener {
            listener,
            location: Location::Unix(path),
        })
    }
}

#[async_trait]
impl WireListener for UnixWireListener {
    fn location(&self) -> &Location {
        &self.location
    }

    async fn accept(&mut self) -> Result<Wire, WireError> {
        let (stream, _peer) = self
            .listener
            .accept()
            .await
            .map_err(|source| WireError::Accept {
                location: self.location.clone(),
                source,
            })?;
        tracing::debug!(location = %self.location, "unix wire accepted");
        // Dialing sockets are usually unnamed, so the peer is described by the listener.
        Ok(Wire::new(stream, format!("peer of {}", self.location)))
    }
}
