//! Exponential backoff with jitter between failed connection attempts.
//!
//! The nominal delay of attempt `n` (counting from 0) is `base * multiplier^n`, capped at
//! `max`. Jitter then shortens it by a random fraction of at most `jitter`, so the delay
//! drawn always lies in `[nominal * (1 - jitter), nominal]` and never exceeds `max`.
//! Shortening rather than lengthening keeps the cap a real upper bound while still
//! spreading out peers that failed at the same moment.
//!
//! The random source is a small splitmix64 generator: [`Backoff::with_seed`] makes every
//! sequence reproducible in tests, [`Backoff::new`] seeds it from the std hasher's
//! per-process random keys, so no extra dependency is needed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The shape of a backoff sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffConfig {
    /// The nominal delay after the first failure. Default 100 ms.
    pub base: Duration,
    /// The cap on every delay. Default 30 s. A `max` below `base` caps `base` too.
    pub max: Duration,
    /// Growth factor per failure. Default 2.0. Values below 1.0 (and NaN) act as 1.0, so
    /// the delay never shrinks as failures accumulate.
    pub multiplier: f64,
    /// The largest fraction by which jitter shortens a delay, in `[0, 1]`. Default 0.5;
    /// 0 turns jitter off. Out-of-range values are clamped, NaN acts as 0.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

/// A sequence of growing, capped, jittered delays.
///
/// ```
/// use std::time::Duration;
/// use plexus_transport::{Backoff, BackoffConfig};
///
/// let config = BackoffConfig {
///     base: Duration::from_millis(100),
///     max: Duration::from_millis(350),
///     multiplier: 2.0,
///     jitter: 0.0,
/// };
/// let mut backoff = Backoff::with_seed(config, 7);
/// let delays: Vec<_> = (0..4).map(|_| backoff.next_delay()).collect();
/// assert_eq!(delays, [100, 200, 350, 350].map(Duration::from_millis));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff with a random seed, so peers that fail together spread out.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff::with_seed(config, random_seed())
    }

    /// A backoff whose jitter sequence is fixed by `seed`, for reproducible tests.
    pub fn with_seed(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            failures: 0,
            rng: seed,
        }
    }

    /// The delay to wait after the next failure; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal(self.failures);
        self.failures = self.failures.saturating_add(1);
        let jitter = clamp_unit(self.config.jitter);
        if jitter == 0.0 {
            return nominal;
        }
        let shortening = jitter * self.next_unit();
        nominal.mul_f64(1.0 - shortening)
    }

    /// How many delays have been drawn since the start or the last [`reset`](Self::reset).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts over from `base`, as after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The configuration this backoff follows.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    fn nominal(&self, failures: u32) -> Duration {
        let max = self.config.max;
        let base = self.config.base.min(max);
        let multiplier = if self.config.multiplier >= 1.0 {
            self.config.multiplier
        } else {
            1.0
        };
        // Work in f64 seconds: powi saturates to infinity instead of overflowing, and the
        // comparison with `max` then caps it before it is turned back into a Duration.
        let seconds = base.as_secs_f64() * multiplier.powi(failures.min(i32::MAX as u32) as i32);
        if seconds.is_finite() && seconds < max.as_secs_f64() {
            Duration::from_secs_f64(seconds)
        } else {
            max
        }
    }

    /// A uniform draw from `[0, 1)` (splitmix64, top 53 bits).
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn clamp_unit(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 1.0)
    }
}

fn random_seed() -> u64 {
    // RandomState carries per-process random keys; the counter makes two backoffs created
    // in the same instant differ.
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: f64) -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(10),
            max: Duration::from_millis(1_000),
            multiplier: 3.0,
            jitter,
        }
    }

    /// Without jitter the delays grow by the multiplier until they reach the cap and stay.
    #[test]
    fn delays_grow_then_stay_at_the_cap() {
        let mut backoff = Backoff::with_seed(config(0.0), 1);
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [10, 30, 90, 270, 810, 1000, 1000, 1000]);
        assert_eq!(backoff.failures(), 8);
    }

    /// With jitter every delay lies in [nominal * (1 - jitter), nominal], and the draws are
    /// not all the same.
    #[test]
    fn jitter_stays_within_its_bounds() {
        let jitter = 0.5;
        let mut backoff = Backoff::with_seed(config(jitter), 42);
        let plain = Backoff::with_seed(config(0.0), 0);
        let mut seen = std::collections::HashSet::new();
        for failure in 0..200 {
            let nominal = plain.nominal(failure);
            let delay = backoff.next_delay();
            assert!(delay <= nominal, "{delay:?} above nominal {nominal:?}");
            assert!(
                delay >= nominal.mul_f64(1.0 - jitter),
                "{delay:?} below the jitter floor of {nominal:?}"
            );
            assert!(delay <= Duration::from_millis(1_000), "{delay:?} above max");
            seen.insert(delay);
        }
        assert!(
            seen.len() > 100,
            "jitter produced only {} values",
            seen.len()
        );
    }

    /// The same seed gives the same sequence; another seed a different one.
    #[test]
    fn seed_fixes_the_sequence() {
        let draw = |seed| {
            let mut backoff = Backoff::with_seed(config(1.0), seed);
            (0..16).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert_ne!(draw(9), draw(10));
    }

    /// Nonsense settings neither panic nor exceed the cap: a shrinking multiplier acts as
    /// 1, jitter is clamped, huge failure counts saturate at `max`.
    #[test]
    fn odd_settings_stay_bounded() {
        let odd = BackoffConfig {
            base: Duration::from_secs(5),
            max: Duration::from_secs(1),
            multiplier: 0.1,
            jitter: 7.0,
        };
        let mut backoff = Backoff::with_seed(odd, 3);
        for _ in 0..10 {
            assert!(backoff.next_delay() <= Duration::from_secs(1));
        }
        let mut huge = Backoff::with_seed(config(f64::NAN), 3);
        huge.failures = u32::MAX - 1;
        assert_eq!(huge.next_delay(), Duration::from_millis(1_000));
        assert_eq!(huge.next_delay(), Duration::from_millis(1_000));
    }

    /// After a reset the sequence starts again from `base`.
    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::with_seed(config(0.0), 1);
        backoff.next_delay();
        backoff.next_delay();
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(10));
    }
}
