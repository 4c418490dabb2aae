//! Connect-once state for outbound destinations.
//!
//! [`ConnectOnce`] maps each [`Dest`] to the state of its connection:
//!
//! ```text
//!                get_or_connect (not backing off)
//!   (absent) ───────────────────────────────────► Connecting(attempt)
//!     ▲  ▲                                          │    │    │
//!     │  │ failed / timed out / panicked:           │    │    │ connected
//!     │  └── cleared, backoff recorded ─────────────┘    │    ▼
//!     │                                                  │  Connected(V)
//!     ├── task cancelled: drop guard clears, no backoff ─┘    │
//!     └──────────────────────── mark_failed / remove ─────────┘
//! ```
//!
//! The attempt runs in its own spawned task and its outcome is handed to every caller
//! through a shared future, so:
//!
//! - **one attempt**: the first caller inserts `Connecting` under the lock; everyone who
//!   finds it there joins the same outcome instead of dialing.
//! - **no lost wake-up**: a caller holds a clone of the shared outcome future, taken under
//!   the same lock that the attempt's settlement takes. Whether the attempt settles before
//!   or after the caller starts to wait, polling the future yields the outcome; there is
//!   no "check, unlock, then wait for a notification" window.
//! - **cancelled creator**: a caller that gives up only drops its clone of the outcome;
//!   the attempt goes on for the others. If the attempt's task itself is dropped
//!   (aborted by [`ConnectOnce::remove`], or its runtime shuts down), a drop guard owned
//!   by the task from its creation (not from its first poll) clears the `Connecting` entry and tells the waiters
//!   [`ConnectError::Cancelled`], so the next call dials again.
//! - **bounded waits**: the attempt is cut off at `connect_timeout`, and every caller
//!   additionally stops waiting at the attempt's deadline plus [`SETTLE_GRACE`], so even
//!   a starved task cannot hold a caller longer.
//!
//! After a failure the destination backs off ([`Backoff`]): a call before the backoff has
//! elapsed fails fast with [`ConnectError::Backoff`] carrying the time left, rather than
//! waiting, so a sender decides itself whether to wait, drop or report. A success resets
//! the backoff. A destination's backoff is kept until it connects or is removed, so a
//! caller that gives up on a destination for good should [`remove`](ConnectOnce::remove)
//! it.
//!
//! The lock is a plain mutex held for a few map operations and never across an await or
//! a task spawn (a spawn onto a shutting-down runtime drops the task, and with it the
//! drop guard that needs the lock, on the spot).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::{Backoff, BackoffConfig, Dest, WireError};

/// How long past an attempt's deadline a caller still waits for the attempt's own
/// timeout to be reported, before it gives up with [`ConnectError::Timeout`] itself.
pub const SETTLE_GRACE: Duration = Duration::from_secs(1);

/// The default [`ConnectOnceConfig::connect_timeout`]: 10 s.
pub const DEFAULT_CONNECT_ONCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a [`ConnectOnce`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectOnceConfig {
    /// The longest one attempt may take. Default [`DEFAULT_CONNECT_ONCE_TIMEOUT`] (10 s).
    /// Every caller returns within this plus [`SETTLE_GRACE`].
    pub connect_timeout: Duration,
    /// The delays between failed attempts to one destination. Default
    /// [`BackoffConfig::default`].
    pub backoff: BackoffConfig,
}

impl Default for ConnectOnceConfig {
    fn default() -> Self {
        ConnectOnceConfig {
            connect_timeout: DEFAULT_CONNECT_ONCE_TIMEOUT,
            backoff: BackoffConfig::default(),
        }
    }
}

/// Why [`ConnectOnce::get_or_connect`] returned no value. Cheap to clone: every waiter of
/// one attempt gets a clone of the same error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError<E: std::error::Error + 'static> {
    /// The connect function failed.
    #[error("connecting to {dest} failed: {source}")]
    Failed {
        /// The destination.
        dest: Dest,
        /// The connect function's error, shared by all waiters.
        #[source]
        source: Arc<E>,
    },
    /// The attempt took longer than the connect timeout.
    #[error("connecting to {dest} timed out after {timeout:?}")]
    Timeout {
        /// The destination.
        dest: Dest,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The last attempt failed and its backoff has not elapsed; no attempt was made.
    #[error("connecting to {dest} is backing off after a failure, retry in {retry_in:?}")]
    Backoff {
        /// The destination.
        dest: Dest,
        /// How long until a call dials again.
        retry_in: Duration,
    },
    /// The attempt's task was dropped before it finished: the entry was removed or the
    /// runtime shut down. No backoff is recorded.
    #[error("the attempt to connect to {dest} was cancelled")]
    Cancelled {
        /// The destination.
        dest: Dest,
    },
    /// The connect function panicked; counted as a failure for the backoff.
    #[error("the attempt to connect to {dest} panicked")]
    Panicked {
        /// The destination.
        dest: Dest,
    },
}

impl<E: std::error::Error + 'static> Clone for ConnectError<E> {
    fn clone(&self) -> Self {
        match self {
            ConnectError::Failed { dest, source } => ConnectError::Failed {
                dest: dest.clone(),
                source: Arc::clone(source),
            },
            ConnectError::Timeout { dest, timeout } => ConnectError::Timeout {
                dest: dest.clone(),
                timeout: *timeout,
            },
            ConnectError::Backoff { dest, retry_in } => ConnectError::Backoff {
                dest: dest.clone(),
                retry_in: *retry_in,
            },
            ConnectError::Cancelled { dest } => ConnectError::Cancelled { dest: dest.clone() },
            ConnectError::Panicked { dest } => ConnectError::Panicked { dest: dest.clone() },
        }
    }
}

impl<E: std::error::Error + 'static> ConnectError<E> {
    /// The destination the error is about.
    pub fn dest(&self) -> &Dest {
        match self {
            ConnectError::Failed { dest, .. }
            | ConnectError::Timeout { dest, .. }
            | ConnectError::Backoff { dest, .. }
            | ConnectError::Cancelled { dest }
            | ConnectError::Panicked { dest } => dest,
        }
    }
}

/// What [`ConnectOnce::adopt`] did with the value offered.
#[derive(Debug)]
pub enum Adopted<V> {
    /// The destination was absent; the value is stored.
    Inserted,
    /// The value replaced this one, which is no longer stored.
    Replaced(V),
    /// The stored value stays; the offered one is handed back.
    Kept(V),
    /// An attempt is under way; the offered one is handed back.
    Connecting(V),
}

/// Where a destination stands, as reported by [`ConnectOnce::phase`] and
/// [`ConnectOnce::list`]. An absent destination has no phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// An attempt is under way.
    Connecting,
    /// A value is stored.
    Connected,
}

type Outcome<V, E> = Result<V, ConnectError<E>>;
type SharedOutcome<V, E> = Shared<BoxFuture<'static, Outcome<V, E>>>;

/// Destination → `Connecting` or `Connected(V)`, with exactly one attempt at a time per
/// destination. See the [module docs](self) for the state diagram and the guarantees.
///
/// `V` is what a connection yields (cloned out to every caller, so usually an `Arc`); `E`
/// is the connect function's error, [`WireError`] by default.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use plexus_transport::{ConnectOnce, ConnectOnceConfig, Dest, WireError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let table: ConnectOnce<Arc<str>> = ConnectOnce::new(ConnectOnceConfig::default());
/// let dest: Dest = "local:1".parse()?;
/// let dials = Arc::new(AtomicUsize::new(0));
/// // A connect function that counts how often it dials.
/// let counting = |dials: Arc<AtomicUsize>| {
///     move |dest: Dest| async move {
///         dials.fetch_add(1, Ordering::SeqCst);
///         Ok::<_, WireError>(Arc::from(format!("connection to {dest}")))
///     }
/// };
/// let (a, b) = tokio::join!(
///     table.get_or_connect(&dest, counting(dials.clone())),
///     table.get_or_connect(&dest, counting(dials.clone())),
/// );
/// assert_eq!(a?, b?);
/// assert_eq!(dials.load(Ordering::SeqCst), 1);
/// assert!(table.get(&dest).is_some());
/// # Ok(())
/// # }
/// ```
pub struct ConnectOnce<V, E: std::error::Error + 'static = WireError> {
    inner: Arc<Inner<V, E>>,
}

struct Inner<V, E: std::error::Error + 'static> {
    config: ConnectOnceConfig,
    tables: Mutex<Tables<V, E>>,
}

struct Tables<V, E: std::error::Error + 'static> {
    states: HashMap<Dest, State<V, E>>,
    failures: HashMap<Dest, Failures>,
    next_attempt: u64,
}

enum State<V, E: std::error::Error + 'static> {
    Connecting(Attempt<V, E>),
    Connected(V),
}

struct Attempt<V, E: std::error::Error + 'static> {
    /// Tells this attempt apart from a later one for the same destination, so a stale
    /// task never settles or clears its successor's entry.
    id: u64,
    deadline: Instant,
    outcome: SharedOutcome<V, E>,
    /// Set right after the spawn, outside the lock; `None` only in between.
    abort: Option<AbortHandle>,
}

struct Failures {
    backoff: Backoff,
    retry_at: Instant,
}

impl<V, E: std::error::Error + 'static> Clone for ConnectOnce<V, E> {
    fn clone(&self) -> Self {
        ConnectOnce {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<V, E: std::error::Error + 'static> fmt::Debug for ConnectOnce<V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tables = self.inner.tables();
        f.debug_struct("ConnectOnce")
            .field("config", &self.inner.config)
            .field("dests", &tables.states.len())
            .field("backing_off", &tables.failures.len())
            .finish()
    }
}

impl<V, E> ConnectOnce<V, E>
where
    V: Clone + Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    /// An empty table.
    pub fn new(config: ConnectOnceConfig) -> Self {
        ConnectOnce {
            inner: Arc::new(Inner {
                config,
                tables: Mutex::new(Tables {
                    states: HashMap::new(),
                    failures: HashMap::new(),
                    next_attempt: 0,
                }),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ConnectOnceConfig {
        &self.inner.config
    }

    /// The value for `dest`, connecting first if there is none.
    ///
    /// - `Connected`: returns a clone of the value; `connect` is not called.
    /// - `Connecting`: waits for that attempt's outcome; `connect` is not called.
    /// - absent and backing off: fails at once with [`ConnectError::Backoff`].
    /// - absent: starts one attempt that runs `connect(dest)` in a spawned task, bounded
    ///   by `connect_timeout`, and waits for it.
    ///
    /// Every caller returns within `connect_timeout` plus [`SETTLE_GRACE`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the returned future only stops this caller from waiting.
    /// The attempt it started or joined goes on for the other callers and, if it
    /// succeeds, its value is stored for the next call.
    ///
    /// # Panics
    ///
    /// When it has to start an attempt outside a tokio runtime, as `tokio::spawn` does.
    pub async fn get_or_connect<F, Fut>(&self, dest: &Dest, connect: F) -> Outcome<V, E>
    where
        F: FnOnce(Dest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let (outcome, deadline) = match self.join_or_start(dest, connect) {
            Ok(joined) => joined,
            Err(ready) => return ready,
        };
        match tokio::time::timeout_at(deadline + SETTLE_GRACE, outcome).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ConnectError::Timeout {
                dest: dest.clone(),
                timeout: self.inner.config.connect_timeout,
            }),
        }
    }

    /// The stored value for `dest`, if it is `Connected`; never connects.
    pub fn get(&self, dest: &Dest) -> Option<V> {
        match self.inner.tables().states.get(dest) {
            Some(State::Connected(value)) => Some(value.clone()),
            _ => None,
        }
    }

    /// Where `dest` stands, or `None` when it is absent.
    pub fn phase(&self, dest: &Dest) -> Option<Phase> {
        self.inner.tables().states.get(dest).map(State::phase)
    }

    /// Whether `dest` is `Connecting` or `Connected`.
    pub fn contains(&self, dest: &Dest) -> bool {
        self.inner.tables().states.contains_key(dest)
    }

    /// How many destinations are `Connecting` or `Connected`.
    pub fn len(&self) -> usize {
        self.inner.tables().states.len()
    }

    /// Whether no destination is `Connecting` or `Connected`.
    pub fn is_empty(&self) -> bool {
        self.inner.tables().states.is_empty()
    }

    /// Every destination that is `Connecting` or `Connected`, in no particular order.
    pub fn list(&self) -> Vec<(Dest, Phase)> {
        self.inner
            .tables()
            .states
            .iter()
            .map(|(dest, state)| (dest.clone(), state.phase()))
            .collect()
    }

    /// How long `dest` still backs off after a failure, or `None` if a call would dial.
    pub fn retry_in(&self, dest: &Dest) -> Option<Duration> {
        let tables = self.inner.tables();
        let failures = tables.failures.get(dest)?;
        let left = failures.retry_at.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Clears a `Connected` entry whose connection broke, so the next call dials again,
    /// and returns its value. A `Connecting` entry is left alone: its attempt is newer than
    /// whatever failed. No backoff is recorded, since the destination was reachable.
    pub fn mark_failed(&self, dest: &Dest) -> Option<V> {
        let mut tables = self.inner.tables();
        if !matches!(tables.states.get(dest), Some(State::Connected(_))) {
            return None;
        }
        let Some(State::Connected(value)) = tables.states.remove(dest) else {
            return None;
        };
        drop(tables);
        tracing::debug!(%dest, "connected entry marked failed");
        Some(value)
    }

    /// Forgets `dest`: its value (returned), its backoff, and any attempt under way,
    /// whose task is aborted and whose waiters get [`ConnectError::Cancelled`] (an attempt
    /// that finishes anyway is discarded).
    pub fn remove(&self, dest: &Dest) -> Option<V> {
        let mut tables = self.inner.tables();
        tables.failures.remove(dest);
        let removed = tables.states.remove(dest);
        drop(tables);
        match removed? {
            State::Connected(value) => {
                tracing::debug!(%dest, "connected entry removed");
                Some(value)
            }
            State::Connecting(attempt) => {
                // Aborted outside the lock: the task's drop guard takes it.
                if let Some(abort) = attempt.abort {
                    abort.abort();
                }
                tracing::debug!(%dest, attempt = attempt.id, "connecting entry removed");
                None
            }
        }
    }

    /// Offers `value`, made elsewhere (a connection the peer dialed), for `dest`, in one
    /// step under the table's lock:
    ///
    /// - absent: stored as `Connected` (any backoff is cleared), [`Adopted::Inserted`];
    /// - `Connected(current)`: replaced when `replace(&current)` says so
    ///   ([`Adopted::Replaced`] with `current`), else [`Adopted::Kept`] with `value` back;
    /// - `Connecting`: left alone, [`Adopted::Connecting`] with `value` back, so the
    ///   caller can wait for the attempt and offer again.
    pub fn adopt(&self, dest: &Dest, value: V, replace: impl FnOnce(&V) -> bool) -> Adopted<V> {
        let mut tables = self.inner.tables();
        match tables.states.get_mut(dest) {
            None => {
                tables.failures.remove(dest);
                tables.states.insert(dest.clone(), State::Connected(value));
                tracing::debug!(%dest, "adopted into an empty entry");
                Adopted::Inserted
            }
            Some(State::Connecting(_)) => Adopted::Connecting(value),
            Some(State::Connected(current)) => {
                if replace(current) {
                    let old = std::mem::replace(current, value);
                    tracing::debug!(%dest, "adopted in place of the connected entry");
                    Adopted::Replaced(old)
                } else {
                    Adopted::Kept(value)
                }
            }
        }
    }

    /// The synchronous part of `get_or_connect`: the answer at once, or the outcome to
    /// wait for and its deadline. Takes the lock only in short sections and never awaits,
    /// so a caller cannot be cancelled between inserting `Connecting` and spawning the
    /// task that settles it.
    fn join_or_start<F, Fut>(
        &self,
        dest: &Dest,
        connect: F,
    ) -> Result<(SharedOutcome<V, E>, Instant), Outcome<V, E>>
    where
        F: FnOnce(Dest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let now = Instant::now();
        let mut tables = self.inner.tables();
        match tables.states.get(dest) {
            Some(State::Connected(value)) => return Err(Ok(value.clone())),
            Some(State::Connecting(attempt)) => {
                tracing::trace!(%dest, attempt = attempt.id, "joining connection attempt");
                return Ok((attempt.outcome.clone(), attempt.deadline));
            }
            None => {}
        }
        if let Some(failures) = tables.failures.get(dest)
            && failures.retry_at > now
        {
            return Err(Err(ConnectError::Backoff {
                dest: dest.clone(),
                retry_in: failures.retry_at - now,
            }));
        }

        let id = tables.next_attempt;
        tables.next_attempt += 1;
        let deadline = now + self.inner.config.connect_timeout;
        let (settle, settled) = oneshot::channel();
        let cancelled_dest = dest.clone();
        let outcome = settled
            .map(move |received: Result<Outcome<V, E>, _>| {
                // The guard always sends before it goes, so this is only a fallback.
                received.unwrap_or(Err(ConnectError::Cancelled {
                    dest: cancelled_dest,
                }))
            })
            .boxed()
            .shared();
        tables.states.insert(
            dest.clone(),
            State::Connecting(Attempt {
                id,
                deadline,
                outcome: outcome.clone(),
                abort: None,
            }),
        );
        drop(tables);
        tracing::debug!(%dest, attempt = id, "connecting");

        let guard = AttemptGuard {
            inner: Arc::clone(&self.inner),
            dest: dest.clone(),
            id,
            settle: Some(settle),
        };
        // The guard is moved into the task's future before the first poll, so dropping
        // the task at any point, even unpolled, runs the guard.
        let task = tokio::spawn(async move {
            let guard = guard;
            let result = tokio::time::timeout_at(deadline, connect(guard.dest.clone())).await;
            guard.settle(result);
        });
        self.inner.set_abort(dest, id, task.abort_handle());
        Ok((outcome, deadline))
    }
}

impl<V, E: std::error::Error + 'static> Inner<V, E> {
    fn tables(&self) -> MutexGuard<'_, Tables<V, E>> {
        // Every critical section leaves the maps consistent after each statement, so a
        // poisoned lock still guards valid state.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_abort(&self, dest: &Dest, id: u64, abort: AbortHandle) {
        if let Some(State::Connecting(attempt)) = self.tables().states.get_mut(dest)
            && attempt.id == id
        {
            attempt.abort = Some(abort);
        }
    }
}

impl<V, E: std::error::Error + 'static> State<V, E> {
    fn phase(&self) -> Phase {
        match self {
            State::Connecting(_) => Phase::Connecting,
            State::Connected(_) => Phase::Connected,
        }
    }
}

/// Owned by an attempt's task: settles the entry when the attempt ends, and clears it if
/// the task is dropped first. All transitions out of `Connecting` happen here (or in
/// `remove`, which takes the entry away before the task can).
struct AttemptGuard<V, E: std::error::Error + 'static> {
    inner: Arc<Inner<V, E>>,
    dest: Dest,
    id: u64,
    /// Taken when the outcome is sent; still there on drop means the task was cut short.
    settle: Option<oneshot::Sender<Outcome<V, E>>>,
}

impl<V: Clone, E: std::error::Error + 'static> AttemptGuard<V, E> {
    /// Records the attempt's result, then hands it to the waiters. The entry is updated
    /// first so that a waiter who calls again on receiving the outcome finds the new state.
    fn settle(mut self, result: Result<Result<V, E>, tokio::time::error::Elapsed>) {
        let dest = self.dest.clone();
        let outcome = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ConnectError::Failed {
                dest,
                source: Arc::new(error),
            }),
            Err(_) => Err(ConnectError::Timeout {
                dest,
                timeout: self.inner.config.connect_timeout,
            }),
        };
        let mut tables = self.inner.tables();
        if tables.is_current(&self.dest, self.id) {
            match &outcome {
                Ok(value) => {
                    tables
                        .states
                        .insert(self.dest.clone(), State::Connected(value.clone()));
                    tables.failures.remove(&self.dest);
                    tracing::info!(dest = %self.dest, attempt = self.id, "connected");
                }
                Err(error) => {
                    tables.states.remove(&self.dest);
                    let retry_in = tables.record_failure(&self.dest, &self.inner.config.backoff);
                    tracing::warn!(
                        dest = %self.dest, attempt = self.id, %error, ?retry_in,
                        "connection attempt failed"
                    );
                }
            }
        }
        drop(tables);
        if let Some(settle) = self.settle.take() {
            // No receiver left means no one waits any more; the state is already set.
            let _ = settle.send(outcome);
        }
    }
}

impl<V, E: std::error::Error + 'static> Drop for AttemptGuard<V, E> {
    fn drop(&mut self) {
        let Some(settle) = self.settle.take() else {
            return;
        };
        let panicked = std::thread::panicking();
        let mut tables = self.inner.tables();
        if tables.is_current(&self.dest, self.id) {
            tables.states.remove(&self.dest);
            if panicked {
                tables.record_failure(&self.dest, &self.inner.config.backoff);
            }
        }
        drop(tables);
        let dest = self.dest.clone();
        let outcome = if panicked {
            tracing::warn!(%dest, attempt = self.id, "connection attempt panicked");
            Err(ConnectError::Panicked { dest })
        } else {
            tracing::debug!(%dest, attempt = self.id, "connection attempt cancelled");
            Err(ConnectError::Cancelled { dest })
        };
        let _ = settle.send(outcome);
    }
}

impl<V, E: std::error::Error + 'static> Tables<V, E> {
    /// Whether `dest` is still `Connecting` with attempt `id`.
    fn is_current(&self, dest: &Dest, id: u64) -> bool {
        matches!(self.states.get(dest), Some(State::Connecting(attempt)) if attempt.id == id)
    }

    /// Counts a failure for `dest` and returns how long it now backs off.
    fn record_failure(&mut self, dest: &Dest, config: &BackoffConfig) -> Duration {
        let now = Instant::now();
        let failures = self
            .failures
            .entry(dest.clone())
            .or_insert_with(|| Failures {
                backoff: Backoff::new(*config),
                retry_at: now,
            });
        let delay = failures.backoff.next_delay();
        failures.retry_at = now + delay;
        delay
    }
}
