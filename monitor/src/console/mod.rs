//! The console: reads snapshots from one or more procs, merges them, and shows them
//! live in a terminal or prints them once as JSON. The `plexus-console` binary is a thin
//! `main` over this module: one [`GatewaySource`] per proc address on its command line,
//! all sending through one [`ConsoleLink`].
//!
//! ```text
//! SnapshotSource (one per proc) ─ fetch_merged ─▶ Snapshot ─ render_screen ─▶ lines
//!                                                         │                        │
//!                                                     print_json              run_live (terminal)
//! ```
//!
//! Only [`run_live`] touches the terminal; everything it shows comes from
//! [`render_screen`], a pure function of the snapshots and the time.

mod args;
mod remote;
mod screen;
mod source;
mod terminal;

use std::io::Write;
use std::time::Duration;

pub use args::{ArgsError, ConsoleArgs, USAGE};
pub use remote::{ConsoleLink, DEFAULT_FETCH_TIMEOUT, GatewaySource};
pub use screen::{ActorRow, Frame, Line, Span, Tone, actor_rows, fit_height, render_screen};
pub use source::{
    Carrier, Fetched, LocalSource, ProcSource, SnapshotSource, SourceError, SourceFailure,
    WireSource, decode_snapshot, encode_request, fetch_merged,
};
pub use terminal::run_live;

/// How the console refreshes, waits and marks actors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsoleOptions {
    /// Time between refreshes of the live view; default 1 second.
    pub refresh: Duration,
    /// A handler running at least this long is marked stuck; default 1 second.
    pub stuck_after: Duration,
    /// Stopped actors stay listed this long; default 10 seconds. Sent with every request,
    /// and the monitor reaps older graves for good, so two consoles with different windows
    /// on one monitor see the shorter one.
    pub grave_window: Duration,
    /// How long one fetch from one source may take; default 2 seconds. A refresh lasts at
    /// most this long, so keep it at or below a few refresh intervals.
    pub timeout: Duration,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            refresh: Duration::from_secs(1),
            stuck_after: Duration::from_secs(1),
            grave_window: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        }
    }
}

impl ConsoleOptions {
    /// Sets the time between refreshes.
    pub fn refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// Sets the time after which a running handler is marked stuck.
    pub fn stuck_after(mut self, stuck_after: Duration) -> Self {
        self.stuck_after = stuck_after;
        self
    }

    /// Sets how long stopped actors stay listed.
    pub fn grave_window(mut self, grave_window: Duration) -> Self {
        self.grave_window = grave_window;
        self
    }

    /// Sets how long one fetch from one source may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why the console stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The command line was not understood.
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// No source was given.
    #[error("no proc to read: none given, or none at the given locations serves its monitor")]
    NoSources,
    /// A source could not be set up.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Some sources did not answer a one-shot fetch (`--json` prints nothing rather than
    /// a partial view).
    #[error("{} of {total} sources failed: {}", failures.len(), join(failures))]
    Sources {
        /// How many sources were asked.
        total: usize,
        /// The sources that failed, and why.
        failures: Vec<SourceFailure>,
    },
    /// The terminal could not be set up, read or drawn on.
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// The snapshot could not be written as JSON.
    #[error("cannot write the snapshot as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn join(failures: &[SourceFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Fetches once from every source and writes the merged snapshot to `out` as pretty
/// JSON followed by a newline. Fails, writing nothing, if any source fails.
///
/// ```
/// use plexus_monitor::Monitor;
/// use plexus_monitor::console::{ConsoleOptions, LocalSource, SnapshotSource, print_json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sources: Vec<Box<dyn SnapshotSource>> = vec![Box::new(LocalSource::new(Monitor::new()))];
/// let mut out = Vec::new();
/// print_json(&sources, &ConsoleOptions::default(), &mut out).await?;
/// let json: serde_json::Value = serde_json::from_slice(&out)?;
/// assert_eq!(json["totals"]["alive"], 0);
/// # Ok(()) }
/// ```
///
/// # Cancel safety
/// Dropping the future before the fetches end writes nothing.
pub async fn print_json(
    sources: &[Box<dyn SnapshotSource>],
    options: &ConsoleOptions,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    let fetched = fetch_merged(sources, options.grave_window, options.timeout).await;
    if !fetched.failures.is_empty() {
        return Err(ConsoleError::Sources {
            total: sources.len(),
            failures: fetched.failures,
        });
    }
    let snapshot = fetched.snapshot.ok_or(ConsoleError::NoSources)?;
    serde_json::to_writer_pretty(&mut *out, &snapshot)?;
    writeln!(out).map_err(serde_json::Error::io)?;
    Ok(())
}
