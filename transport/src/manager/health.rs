//! The health checker: reconnects the failed wires of partly healthy destinations and
//! removes fully failed ones.
//!
//! It runs every [`ManagerConfig::health_interval`](super::ManagerConfig) in a task that
//! holds the manager weakly, so it ends by itself once the manager is gone. Reconnects
//! run one destination after another, each bounded by the connect timeout, so one dead
//! peer delays the next check by at most that much.

use std::sync::{Arc, Weak};

use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use super::{DestTransport, Inner};
use crate::Dest;

/// Starts the checker of `inner`.
pub(super) fn spawn(inner: &Arc<Inner>) -> AbortHandle {
    let weak = Arc::downgrade(inner);
    let period = inner.config.health_interval;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate; there is nothing to check yet.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if !check(&weak).await {
                return;
            }
        }
    })
    .abort_handle()
}

/// One round over every connected destination. Returns `false` once the manager is gone.
async fn check(weak: &Weak<Inner>) -> bool {
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    let connected: Vec<(Dest, Arc<DestTransport>)> = inner
        .table
        .list()
        .into_iter()
        .filter_map(|(dest, _)| inner.table.get(&dest).map(|transport| (dest, transport)))
        .collect();
    for (dest, transport) in connected {
        if !transport.is_healthy() {
            // Its requests already failed with `Disconnected` when each connection ended.
            inner.remove_if_current(&dest, &transport);
            continue;
        }
        let failed = transport.failed_wires();
        if !failed.is_empty() {
            reconnect(&inner, &dest, &transport, &failed).await;
        }
    }
    true
}

/// Dials `dest` again and puts the new connections in place of the `failed` wires.
/// Extra wires the builder opened are closed. Failures are logged; the next round tries
/// again.
async fn reconnect(inner: &Arc<Inner>, dest: &Dest, transport: &DestTransport, failed: &[usize]) {
    let limit = inner.table.config().connect_timeout;
    let dialed = tokio::time::timeout(limit, async {
        let wires = inner.builder.connect(dest).await?;
        inner.open(wires).await
    })
    .await;
    let connections = match dialed {
        Ok(Ok(connections)) => connections,
        Ok(Err(error)) => {
            tracing::warn!(%dest, %error, "reconnecting failed wires failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%dest, timeout = ?limit, "reconnecting failed wires timed out");
            return;
        }
    };
    let mut connections = connections.into_iter();
    for &index in failed {
        let Some(connection) = connections.next() else {
            break;
        };
        transport.replace(index, connection);
    }
    connections.for_each(|extra| extra.close());
}
