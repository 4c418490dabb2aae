//! Where the console reads snapshots from: one [`SnapshotSource`] per location, fetched
//! together and merged into one view.
//!
//! Two sources live here: [`LocalSource`] reads a [`Monitor`] of this process directly,
//! and [`ProcSource`] asks a proc's monitor service through [`Proc::deliver_remote`], the
//! same encoded request and reply a gateway carries between processes.

use std::fmt;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use plexus_core::{Proc, RemoteMessage};
use tokio::sync::oneshot;

use crate::monitor::Monitor;
use crate::service::{MONITOR_ACTOR_NAME, SnapshotRequest};
use crate::snapshot::Snapshot;

/// Reads the snapshot of one location's monitor.
///
/// A console holds one source per location and [merges](fetch_merged) what they return,
/// so a source answers for its own location only and reports failures as a
/// [`SourceError`] instead of retrying: the next refresh is the retry. A source that keeps
/// a connection opens it on its first fetch and again after a failure, so building one
/// never waits.
///
/// ```
/// use plexus_monitor::Monitor;
/// use plexus_monitor::console::{LocalSource, SnapshotSource};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = LocalSource::new(Monitor::new());
/// let snapshot = source.fetch(Duration::from_secs(10)).await?;
/// assert!(snapshot.actors.is_empty());
/// assert_eq!(source.label(), "local");
/// # Ok(()) }
/// ```
pub trait SnapshotSource: Send + Sync {
    /// A short name of the location, shown on screen and in errors (e.g. `tcp://10.0.0.5:7000`).
    fn label(&self) -> &str;

    /// Fetches one snapshot, keeping stopped actors visible for `grave_window`.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; the source stays usable.
    fn fetch(&self, grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>>;
}

/// Why a source returned no snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// This build has no transport for the location.
    #[error("no transport to reach {location} in this build")]
    NoTransport {
        /// The location, as given.
        location: String,
    },
    /// The location could not be reached (connection refused, lost, ...).
    #[error("cannot reach {location}: {reason}")]
    Unreachable {
        /// The source's label.
        location: String,
        /// What the transport reported.
        reason: String,
    },
    /// The request was delivered but the other side did not answer with a snapshot: no
    /// monitor service there, or it stopped.
    #[error("{location} refused the snapshot request: {reason}")]
    Refused {
        /// The source's label.
        location: String,
        /// What the other side reported.
        reason: String,
    },
    /// The reply was not a snapshot this console can read.
    #[error("unreadable snapshot from {location}: {reason}")]
    Decode {
        /// The source's label.
        location: String,
        /// What the decoder reported.
        reason: String,
    },
    /// No answer within the console's timeout.
    #[error("{location} did not answer within {after:?}")]
    TimedOut {
        /// The source's label.
        location: String,
        /// The timeout.
        after: Duration,
    },
}

/// A source that failed in one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceFailure {
    /// The source's label.
    pub label: String,
    /// What went wrong.
    pub error: SourceError,
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// What one round of fetches from every source gave.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Fetched {
    /// The merge of every snapshot that came back; `None` if none did.
    pub snapshot: Option<Snapshot>,
    /// The sources that failed, in the order of the sources.
    pub failures: Vec<SourceFailure>,
}

/// Fetches from every source at once, each bounded by `timeout`, and merges what comes
/// back (see [`Snapshot::merge`]). A failing source does not hide the others: its error
/// is listed in [`Fetched::failures`].
///
/// # Cancel safety
/// Dropping the future abandons every pending fetch.
pub async fn fetch_merged(
    sources: &[Box<dyn SnapshotSource>],
    grave_window: Duration,
    timeout: Duration,
) -> Fetched {
    let fetches = sources.iter().map(|source| async move {
        match tokio::time::timeout(timeout, source.fetch(grave_window)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SourceError::TimedOut {
                location: source.label().to_owned(),
                after: timeout,
            }),
        }
    });
    let outcomes = futures::future::join_all(fetches).await;
    let mut snapshots = Vec::new();
    let mut failures = Vec::new();
    for (source, outcome) in sources.iter().zip(outcomes) {
        match outcome {
            Ok(snapshot) => snapshots.push(snapshot),
            Err(error) => {
                tracing::debug!(source = source.label(), %error, "snapshot fetch failed");
                failures.push(SourceFailure {
                    label: source.label().to_owned(),
                    error,
                });
            }
        }
    }
    Fetched {
        snapshot: (!snapshots.is_empty()).then(|| Snapshot::merge(snapshots)),
        failures,
    }
}

/// Reads a [`Monitor`] of this process directly.
#[derive(Clone, Debug)]
pub struct LocalSource {
    monitor: Monitor,
    label: String,
}

impl LocalSource {
    /// A source labelled `local`.
    pub fn new(monitor: Monitor) -> Self {
        LocalSource::with_label(monitor, "local")
    }

    /// A source with its own label, to tell several local monitors apart.
    pub fn with_label(monitor: Monitor, label: impl Into<String>) -> Self {
        LocalSource {
            monitor,
            label: label.into(),
        }
    }
}

impl SnapshotSource for LocalSource {
    fn label(&self) -> &str {
        &self.label
    }

    fn fetch(&self, grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>> {
        let snapshot = self.monitor.snapshot(grave_window);
        futures::future::ready(Ok(snapshot)).boxed()
    }
}

/// Asks the monitor service of a proc of this process (see
/// [`Monitor::serve_on`]) through [`Proc::deliver_remote`]: the request is encoded, the
/// reply decoded, exactly as they cross a gateway. A remote source differs only in how
/// the encoded request reaches the proc.
#[derive(Clone, Debug)]
pub struct ProcSource {
    proc: Proc,
    label: String,
}

impl ProcSource {
    /// A source labelled with the proc's id.
    pub fn new(proc: Proc) -> Self {
        let label = proc.id().to_string();
        ProcSource { proc, label }
    }
}

impl SnapshotSource for ProcSource {
    fn label(&self) -> &str {
        &self.label
    }

    fn fetch(&self, grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>> {
        async move {
            let request = encode_request(grave_window);
            let (reply, answer) = oneshot::channel();
            let delivered = self.proc.deliver_remote(
                MONITOR_ACTOR_NAME,
                SnapshotRequest::NAME,
                &request,
                Some(Box::new(move |outcome| {
                    // The fetch may have been dropped; nobody is left to tell.
                    let _ = reply.send(outcome);
                })),
            );
            if let Err(error) = delivered {
                return Err(SourceError::Refused {
                    location: self.label.clone(),
                    reason: error.to_string(),
                });
            }
            let encoded = answer
                .await
                .map_err(|_| SourceError::Refused {
                    location: self.label.clone(),
                    reason: "the reply was dropped".to_owned(),
                })?
                .map_err(|error| SourceError::Refused {
                    location: self.label.clone(),
                    reason: error.to_string(),
                })?;
            decode_snapshot(&self.label, &encoded)
        }
        .boxed()
    }
}

/// The postcard payload of a [`SnapshotRequest`] with this grave window, to send to
/// [`MONITOR_ACTOR_NAME`] under [`SnapshotRequest::NAME`].
pub fn encode_request(grave_window: Duration) -> Vec<u8> {
    // A struct of one integer always encodes; the empty fallback would be refused by the
    // service as undecodable, never misread.
    postcard::to_allocvec(&SnapshotRequest::new(grave_window)).unwrap_or_default()
}

/// Decodes the postcard reply of a [`SnapshotRequest`] from the source labelled
/// `location`.
pub fn decode_snapshot(location: &str, encoded: &[u8]) -> Result<Snapshot, SourceError> {
    postcard::from_bytes(encoded).map_err(|error| SourceError::Decode {
        location: location.to_owned(),
        reason: error.to_string(),
    })
}
