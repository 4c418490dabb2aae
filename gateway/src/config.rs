//! The settings of a networked gateway: how it dials, listens, queues and times out.

use std::time::Duration;

#[cfg(all(unix, feature = "unix"))]
use plexus_transport::UnixConfig;
use plexus_transport::{FlowConfig, InprocNetwork, ManagerConfig, TcpConfig};

/// Settings of a [`Gateway`](crate::Gateway) built with [`Gateway::new`](crate::Gateway::new).
///
/// ```
/// use std::time::Duration;
///
/// use plexus_gateway::GatewayConfig;
/// use plexus_transport::InprocNetwork;
///
/// let config = GatewayConfig {
///     inproc: Some(InprocNetwork::new()),
///     ..GatewayConfig::default()
/// }
/// .with_request_timeout(Duration::from_secs(10));
/// assert_eq!(config.dest_queue_capacity, 4096);
/// ```
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The outbound transport manager: connect timeout and backoff, handshake timeout,
    /// connection settings (ping, idle timeout, queue sizes), health interval. The
    /// handshake timeout also bounds the handshake of every accepted wire. Default
    /// [`ManagerConfig::default`].
    pub manager: ManagerConfig,
    /// How `tcp://` destinations are dialed. Default [`TcpConfig::default`].
    pub tcp: TcpConfig,
    /// How `unix://` destinations are dialed. Default [`UnixConfig::default`].
    #[cfg(all(unix, feature = "unix"))]
    #[cfg_attr(docsrs, doc(cfg(feature = "unix")))]
    pub unix: UnixConfig,
    /// The in-process network that `local:N` locations are dialed and served on; `None`
    /// (the default) refuses `local:` destinations. Gateways of one process that should
    /// reach each other at `local:` locations share one network (clones share it).
    pub inproc: Option<InprocNetwork>,
    /// How many tells of one lane (destination, sender, recipient) may wait to be handed
    /// to a connection before [`Gateway::post_to`](crate::Gateway::post_to) refuses with
    /// [`PostError::Full`](crate::PostError::Full); an awaited tell waits for room instead.
    /// Also the bound of the tell queue of each proxy link. Default 4096; 0 acts as 1.
    pub dest_queue_capacity: usize,
    /// How many envelopes may wait for one actor whose mailbox is full before further
    /// ones are refused with [`PostError::Overloaded`](crate::PostError::Overloaded).
    /// Default 65 536; 0 acts as 1.
    pub ingress_queue_capacity: usize,
    /// The credit window this gateway grants each flow (one sender → one recipient) on
    /// its connections (design 3.4): a peer sends at most this much to one actor before
    /// that actor consumes some, so a slow actor makes its senders wait for credit
    /// instead of growing queues here. Default [`FlowConfig::default`] (1,024 envelopes,
    /// 32 MiB); `None` runs no flow control, and envelopes for a full mailbox then wait
    /// in the gateway's per-actor queue up to `ingress_queue_capacity`.
    pub flow: Option<FlowConfig>,
    /// The bound on a request this gateway relays to a proxied proc, and on a request made
    /// without a timeout of its own. Default 30 s.
    ///
    /// A relayed request cannot be bounded by its asker's own timeout: the envelope
    /// (design 5) carries no deadline, so the relay waits at most this long. The asker
    /// is never held longer than its own timeout (its side fails it then), and the relay
    /// forgets the request as soon as the connection it came on closes; while that
    /// connection lives, a request its asker gave up on holds a slot here until this
    /// bound. Keep it at least as long as the longest ask made through proxies.
    pub request_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            manager: ManagerConfig::default(),
            tcp: TcpConfig::default(),
            #[cfg(all(unix, feature = "unix"))]
            unix: UnixConfig::default(),
            inproc: None,
            dest_queue_capacity: 4096,
            ingress_queue_capacity: 65_536,
            flow: Some(FlowConfig::default()),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl GatewayConfig {
    /// The same settings with `request_timeout` replaced.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}
