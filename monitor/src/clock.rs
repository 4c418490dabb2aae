//! A coarse monotonic clock for the hot path: nanoseconds since the monitor's epoch,
//! advanced by a background thread every tick and read with one relaxed load.
//!
//! Reading the system clock costs tens of nanoseconds on some virtual machines, a large
//! share of a message's trip through a mailbox; a handler's start only needs to be good
//! enough to spot a stuck handler. A coarse reading is never later than the true time, so
//! an elapsed time measured from it up to a precise "now" never comes out short; it is
//! over by at most the tick plus however late the thread ran.
//!
//! The thread holds only a weak reference and ends at the first tick after the monitor
//! and every actor monitor that reads the clock are gone. If no thread can be started,
//! every reading is precise instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The shortest tick accepted, so a mistaken zero cannot turn the thread into a spin.
pub(crate) const MIN_TICK: Duration = Duration::from_micros(100);

/// Nanoseconds since an epoch, coarse on the hot path and precise on request.
pub(crate) struct CoarseClock {
    epoch: Instant,
    coarse: AtomicU64,
    /// Whether a thread advances `coarse`; without one, readings are precise.
    ticking: AtomicBool,
}

impl CoarseClock {
    /// A clock whose coarse reading advances every `tick` (at least [`MIN_TICK`]).
    pub(crate) fn start(tick: Duration) -> Arc<CoarseClock> {
        let clock = Arc::new(CoarseClock {
            epoch: Instant::now(),
            coarse: AtomicU64::new(0),
            ticking: AtomicBool::new(true),
        });
        if let Err(error) = spawn_ticker(Arc::downgrade(&clock), tick) {
            tracing::warn!(%error, "no clock thread; the monitor reads the system clock per message");
            clock.ticking.store(false, Ordering::Relaxed);
        }
        clock
    }

    /// The time now to within a tick, never later than the true time.
    #[inline]
    pub(crate) fn coarse(&self) -> u64 {
        if self.ticking.load(Ordering::Relaxed) {
            self.coarse.load(Ordering::Relaxed)
        } else {
            self.now()
        }
    }

    /// `at`, exactly.
    pub(crate) fn precise(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The time now, exactly.
    pub(crate) fn now(&self) -> u64 {
        self.precise(Instant::now())
    }
}

/// Starts the thread that advances `clock` every `tick` until the clock is dropped.
fn spawn_ticker(clock: Weak<CoarseClock>, tick: Duration) -> std::io::Result<JoinHandle<()>> {
    let tick = tick.max(MIN_TICK);
    std::thread::Builder::new()
        .name("plexus-monitor-clock".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                let Some(clock) = clock.upgrade() else {
                    return;
                };
                clock.coarse.store(clock.now(), Ordering::Relaxed);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse reading advances with the ticks, never ahead of the precise one.
    #[test]
    fn coarse_reading_trails_the_precise_one() {
        let clock = CoarseClock::start(Duration::from_millis(1));
        let first = clock.coarse();
        std::thread::sleep(Duration::from_millis(20));
        let later = clock.coarse();
        assert!(
            later > first,
            "the clock did not advance: {first} then {later}"
        );
        assert!(later <= clock.now());
    }

    /// The thread ends once nothing holds the clock.
    #[test]
    fn thread_ends_with_the_clock() {
        let clock = Arc::new(CoarseClock {
            epoch: Instant::now(),
            coarse: AtomicU64::new(0),
            ticking: AtomicBool::new(true),
        });
        let ticker = spawn_ticker(Arc::downgrade(&clock), Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.coarse() > 0, "the thread never ticked");
        drop(clock);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ticker.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the clock thread outlived its clock"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
