//! The wire builder of a networked gateway: picks TCP, unix or in-process wires by the
//! scheme of the destination's location.

use async_trait::async_trait;
use plexus_core::Location;
#[cfg(all(unix, feature = "unix"))]
use plexus_transport::UnixWireBuilder;
use plexus_transport::{Dest, InprocNetwork, TcpWireBuilder, Wire, WireBuilder, WireError};

use crate::GatewayConfig;

/// Dials `tcp://`, `unix://` (feature `unix`) and `local:N` (when the config holds an
/// [`InprocNetwork`]) destinations with the built-in builders.
#[derive(Clone, Debug)]
pub(crate) struct SchemeWireBuilder {
    tcp: TcpWireBuilder,
    #[cfg(all(unix, feature = "unix"))]
    unix: UnixWireBuilder,
    inproc: Option<InprocNetwork>,
}

impl SchemeWireBuilder {
    pub(crate) fn new(config: &GatewayConfig) -> Self {
        SchemeWireBuilder {
            tcp: TcpWireBuilder::new(config.tcp.clone()),
            #[cfg(all(unix, feature = "unix"))]
            unix: UnixWireBuilder::new(config.unix.clone()),
            inproc: config.inproc.clone(),
        }
    }
}

#[async_trait]
impl WireBuilder for SchemeWireBuilder {
    async fn connect(&self, dest: &Dest) -> Result<Vec<Wire>, WireError> {
        match dest.location() {
            Location::Tcp(_) => self.tcp.connect(dest).await,
            #[cfg(all(unix, feature = "unix"))]
            Location::Unix(_) => self.unix.connect(dest).await,
            #[cfg(not(all(unix, feature = "unix")))]
            Location::Unix(_) => Err(WireError::Unsupported {
                dest: dest.clone(),
                builder: "gateway (built without the `unix` feature)",
            }),
            Location::Local(_) => match &self.inproc {
                Some(network) => network.connect(dest).await,
                None => Err(WireError::Unsupported {
                    dest: dest.clone(),
                    builder: "gateway (no in-process network configured)",
                }),
            },
        }
    }
}
