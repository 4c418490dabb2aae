//! Connect-once against a model: random sequences of calls, failures, clock advances,
//! `mark_failed` and `remove` leave the table exactly where a plain map model says.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexus_transport::{BackoffConfig, ConnectError, ConnectOnce, ConnectOnceConfig, Dest, Phase};
use proptest::prelude::*;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
#[error("dial refused by the model")]
struct Refused;

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_millis(700);

#[derive(Clone, Debug)]
enum Op {
    /// Calls `get_or_connect`; a dial, if made, takes `millis` and succeeds or fails.
    Connect {
        dest: u64,
        succeed: bool,
        millis: u64,
    },
    Advance {
        millis: u64,
    },
    MarkFailed {
        dest: u64,
    },
    Remove {
        dest: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u64, any::<bool>(), 0..50u64)
            .prop_map(|(dest, succeed, millis)| Op::Connect { dest, succeed, millis }),
        2 => (0..400u64).prop_map(|millis| Op::Advance { millis }),
        1 => (0..3u64).prop_map(|dest| Op::MarkFailed { dest }),
        1 => (0..3u64).prop_map(|dest| Op::Remove { dest }),
    ]
}

/// What the model remembers per dest.
#[derive(Default)]
struct Model {
    connected: Option<u64>,
    failures: u32,
    retry_at: Option<Instant>,
}

fn backoff(failures: u32) -> Duration {
    (BASE * 2u32.saturating_pow(failures - 1)).min(MAX)
}

fn dest(n: u64) -> Dest {
    format!("local:{n}").parse().unwrap()
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let table: ConnectOnce<u64, Refused> = ConnectOnce::new(ConnectOnceConfig {
        connect_timeout: Duration::from_secs(5),
        backoff: BackoffConfig {
            base: BASE,
            max: MAX,
            multiplier: 2.0,
            jitter: 0.0,
        },
    });
    let mut models: HashMap<u64, Model> = HashMap::new();
    let dials = Arc::new(AtomicUsize::new(0));
    let mut expected_dials = 0;
    let mut next_value = 0u64;

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Connect {
                dest: n,
                succeed,
                millis,
            } => {
                next_value += 1;
                let value = next_value;
                let counter = Arc::clone(&dials);
                let result = table
                    .get_or_connect(&dest(n), move |_| async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(millis)).await;
                        if succeed { Ok(value) } else { Err(Refused) }
                    })
                    .await;
                let model = models.entry(n).or_default();
                let now = Instant::now();
                if let Some(connected) = model.connected {
                    prop_assert_eq!(result.ok(), Some(connected), "step {}", step);
                } else if let Some(retry_at) = model.retry_at.filter(|at| *at > now) {
                    match result {
                        Err(ConnectError::Backoff { retry_in, .. }) => {
                            prop_assert_eq!(retry_in, retry_at - now, "step {}", step)
                        }
                        other => {
                            prop_assert!(false, "step {step}: expected Backoff, got {other:?}")
                        }
                    }
                } else {
                    expected_dials += 1;
                    if succeed {
                        prop_assert_eq!(result.ok(), Some(value), "step {}", step);
                        *model = Model {
                            connected: Some(value),
                            ..Model::default()
                        };
                    } else {
                        prop_assert!(
                            matches!(result, Err(ConnectError::Failed { .. })),
                            "step {step}: expected Failed, got {result:?}"
                        );
                        model.failures += 1;
                        model.retry_at = Some(now + backoff(model.failures));
                    }
                }
            }
            Op::Advance { millis } => tokio::time::sleep(Duration::from_millis(millis)).await,
            Op::MarkFailed { dest: n } => {
                let model = models.entry(n).or_default();
                prop_assert_eq!(table.mark_failed(&dest(n)), model.connected.take());
            }
            Op::Remove { dest: n } => {
                let model = models.remove(&n).unwrap_or_default();
                prop_assert_eq!(table.remove(&dest(n)), model.connected);
            }
        }

        prop_assert_eq!(
            dials.load(Ordering::SeqCst),
            expected_dials,
            "step {}",
            step
        );
        let now = Instant::now();
        for n in 0..3 {
            let model = models.get(&n);
            let connected = model.and_then(|m| m.connected);
            prop_assert_eq!(table.get(&dest(n)), connected, "step {}", step);
            prop_assert_eq!(
                table.phase(&dest(n)),
                connected.map(|_| Phase::Connected),
                "step {}: a finished call left the dest Connecting",
                step
            );
            let retry_in = model
                .and_then(|m| m.retry_at)
                .filter(|at| *at > now)
                .map(|at| at - now);
            prop_assert_eq!(table.retry_in(&dest(n)), retry_in, "step {}", step);
        }
        prop_assert_eq!(
            table.len(),
            models.values().filter(|m| m.connected.is_some()).count()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of awaited calls, failures, clock advances, `mark_failed` and
    /// `remove` matches the model: one dial per call that is neither connected nor
    /// backing off, backoff windows that double up to the cap and reset on success, and
    /// never a `Connecting` entry once every call has returned.
    #[test]
    fn sequential_operations_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(run(ops))?;
    }
}
