//! Connect-once: one attempt per destination, shared outcomes, no stuck `Connecting`,
//! bounded waits and backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexus_transport::{
    BackoffConfig, ConnectError, ConnectOnce, ConnectOnceConfig, Dest, InprocNetwork, Phase, Wire,
    WireBuilder, WireListener,
};
use tokio::time::{Instant, timeout};

/// The error of the test connect functions.
#[derive(Debug, thiserror::Error)]
#[error("dial refused by the test")]
struct Refused;

const BOUND: Duration = Duration::from_secs(20);

fn dest(n: u64) -> Dest {
    format!("local:{n}").parse().unwrap()
}

/// A table with a fixed, jitter-free backoff so that the window is known exactly.
fn table<V: Clone + Send + Sync + 'static>(
    connect_timeout: Duration,
    backoff_base: Duration,
) -> ConnectOnce<V, Refused> {
    ConnectOnce::new(ConnectOnceConfig {
        connect_timeout,
        backoff: BackoffConfig {
            base: backoff_base,
            max: backoff_base * 8,
            multiplier: 2.0,
            jitter: 0.0,
        },
    })
}

/// A connect function that counts its calls, waits `delay`, then yields `result()`.
fn counted<V: Send + 'static>(
    dials: &Arc<AtomicUsize>,
    delay: Duration,
    result: impl FnOnce() -> Result<V, Refused> + Send + 'static,
) -> impl FnOnce(Dest) -> futures::future::BoxFuture<'static, Result<V, Refused>> + Send + 'static {
    let dials = Arc::clone(dials);
    move |_dest| {
        Box::pin(async move {
            dials.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            result()
        })
    }
}

/// 1,000 concurrent first callers on a multi-threaded runtime: the connect function runs
/// exactly once and every caller gets the very same value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_first_callers_share_one_attempt() {
    let table = table::<Arc<u64>>(Duration::from_secs(5), Duration::from_millis(100));
    let dials = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(1_000));
    let callers: Vec<_> = (0..1_000)
        .map(|_| {
            let (table, dials, barrier) = (table.clone(), dials.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let connect = counted(&dials, Duration::from_millis(50), || Ok(Arc::new(7)));
                table.get_or_connect(&dest(1), connect).await
            })
        })
        .collect();
    let results = timeout(BOUND, futures::future::join_all(callers))
        .await
        .expect("1,000 callers did not all return within the bound");
    let first = table.get(&dest(1)).expect("no connected value stored");
    for result in results {
        let value = result.unwrap().expect("a caller got an error");
        assert!(
            Arc::ptr_eq(&value, &first),
            "a caller got a different value"
        );
    }
    assert_eq!(
        dials.load(Ordering::SeqCst),
        1,
        "connect ran more than once"
    );
    assert_eq!(table.phase(&dest(1)), Some(Phase::Connected));
}

/// With a failing connect function, 1,000 concurrent first callers all get the one
/// error within the attempt's duration; a call inside the backoff window fails fast with
/// `Backoff` without dialing; a call after the window dials again.
#[tokio::test(start_paused = true)]
async fn thousand_first_callers_share_one_failure_then_retry_after_backoff() {
    let backoff = Duration::from_millis(500);
    let table = table::<u64>(Duration::from_secs(5), backoff);
    let dials = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // Paused time only advances when every task is idle, so all 1,000 have joined the
    // attempt before its 100 ms sleep ends.
    let callers: Vec<_> = (0..1_000)
        .map(|_| {
            let (table, dials) = (table.clone(), dials.clone());
            tokio::spawn(async move {
                let connect = counted(&dials, Duration::from_millis(100), || Err(Refused));
                table.get_or_connect(&dest(1), connect).await
            })
        })
        .collect();
    let results = timeout(BOUND, futures::future::join_all(callers))
        .await
        .expect("1,000 callers did not all return within the bound");
    assert!(
        started.elapsed() <= Duration::from_millis(150),
        "errors came late"
    );
    let mut sources = Vec::new();
    for result in results {
        match result.unwrap() {
            Err(ConnectError::Failed { dest: d, source }) => {
                assert_eq!(d, dest(1));
                sources.push(source);
            }
            other => panic!("expected the shared failure, got {other:?}"),
        }
    }
    assert!(
        sources.iter().all(|s| Arc::ptr_eq(s, &sources[0])),
        "waiters got different errors"
    );
    assert_eq!(dials.load(Ordering::SeqCst), 1);
    assert_eq!(
        table.phase(&dest(1)),
        None,
        "failed dest stayed in the table"
    );

    let retry_in = match table
        .get_or_connect(&dest(1), counted(&dials, Duration::ZERO, || Ok(1)))
        .await
    {
        Err(ConnectError::Backoff { retry_in, .. }) => retry_in,
        other => panic!("expected Backoff inside the window, got {other:?}"),
    };
    assert!(
        retry_in <= backoff && retry_in > Duration::ZERO,
        "{retry_in:?}"
    );
    assert_eq!(
        dials.load(Ordering::SeqCst),
        1,
        "dialed inside the backoff window"
    );

    tokio::time::sleep(retry_in).await;
    assert_eq!(table.retry_in(&dest(1)), None);
    let value = table
        .get_or_connect(&dest(1), counted(&dials, Duration::ZERO, || Ok(9)))
        .await
        .expect("the retry after the backoff failed");
    assert_eq!(value, 9);
    assert_eq!(
        dials.load(Ordering::SeqCst),
        2,
        "no second dial after the backoff"
    );
}

/// Consecutive failures back off longer each time, up to the cap, and a success resets
/// the backoff.
#[tokio::test(start_paused = true)]
async fn backoff_grows_per_failure_and_resets_on_success() {
    let base = Duration::from_millis(100);
    let table = table::<u64>(Duration::from_secs(5), base);
    let dials = Arc::new(AtomicUsize::new(0));
    let mut windows = Vec::new();
    for _ in 0..5 {
        let result = table
            .get_or_connect(&dest(2), counted(&dials, Duration::ZERO, || Err(Refused)))
            .await;
        assert!(
            matches!(result, Err(ConnectError::Failed { .. })),
            "{result:?}"
        );
        let window = table
            .retry_in(&dest(2))
            .expect("no backoff after a failure");
        windows.push(window);
        tokio::time::sleep(window).await;
    }
    assert_eq!(
        windows,
        [100, 200, 400, 800, 800].map(Duration::from_millis)
    );
    table
        .get_or_connect(&dest(2), counted(&dials, Duration::ZERO, || Ok(1)))
        .await
        .unwrap();
    table.mark_failed(&dest(2));
    let result = table
        .get_or_connect(&dest(2), counted(&dials, Duration::ZERO, || Err(Refused)))
        .await;
    assert!(result.is_err());
    assert_eq!(
        table.retry_in(&dest(2)),
        Some(base),
        "success did not reset the backoff"
    );
}

/// A connect function that never finishes is cut off at the connect timeout: every
/// caller gets `Timeout` at that moment, the entry is cleared and a backoff recorded.
#[tokio::test(start_paused = true)]
async fn connect_timeout_bounds_every_caller() {
    let connect_timeout = Duration::from_secs(2);
    let table = table::<u64>(connect_timeout, Duration::from_millis(100));
    let started = Instant::now();
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .get_or_connect(&dest(3), |_| futures::future::pending())
                    .await
            })
        })
        .collect();
    let results = timeout(BOUND, futures::future::join_all(callers))
        .await
        .expect("callers of a hung attempt did not return");
    assert_eq!(started.elapsed(), connect_timeout);
    for result in results {
        match result.unwrap() {
            Err(ConnectError::Timeout { timeout, .. }) => assert_eq!(timeout, connect_timeout),
            other => panic!("expected Timeout, got {other:?}"),
        }
    }
    assert_eq!(table.phase(&dest(3)), None);
    assert!(
        table.retry_in(&dest(3)).is_some(),
        "a timeout recorded no backoff"
    );
}

/// The task that drives an attempt is dropped mid-connect (its runtime shuts down): the
/// drop guard clears `Connecting` without a backoff, and the next call dials again.
#[test]
fn dropped_attempt_task_does_not_stay_connecting() {
    let table = table::<u64>(Duration::from_secs(60), Duration::from_secs(60));
    let dials = Arc::new(AtomicUsize::new(0));

    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    doomed.block_on(async {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let table = table.clone();
        let dials = dials.clone();
        tokio::spawn(async move {
            table
                .get_or_connect(&dest(4), move |_| async move {
                    dials.fetch_add(1, Ordering::SeqCst);
                    let _ = started_tx.send(());
                    futures::future::pending::<Result<u64, Refused>>().await
                })
                .await
        });
        timeout(BOUND, started_rx)
            .await
            .expect("the attempt never started")
            .unwrap();
    });
    assert_eq!(table.phase(&dest(4)), Some(Phase::Connecting));
    drop(doomed);
    assert_eq!(table.phase(&dest(4)), None, "the dest stayed Connecting");
    assert_eq!(
        table.retry_in(&dest(4)),
        None,
        "a cancellation recorded a backoff"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let value = runtime.block_on(async {
        timeout(
            BOUND,
            table.get_or_connect(&dest(4), counted(&dials, Duration::ZERO, || Ok(5))),
        )
        .await
        .expect("the redial did not return")
    });
    assert_eq!(value.unwrap(), 5);
    assert_eq!(
        dials.load(Ordering::SeqCst),
        2,
        "the next call did not dial again"
    );
}

/// An attempt whose task is dropped before it was ever polled (spawned onto a runtime
/// that then shuts down) still clears `Connecting`: the drop guard lives in the task from
/// the start, not from its first poll.
#[test]
fn attempt_dropped_before_its_first_poll_does_not_stay_connecting() {
    let table = table::<u64>(Duration::from_secs(60), Duration::from_secs(60));
    let dials = Arc::new(AtomicUsize::new(0));
    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    doomed.block_on(async {
        let ten = dest(10);
        let caller = table.get_or_connect(&ten, counted(&dials, Duration::from_secs(30), || Ok(1)));
        let mut caller = std::pin::pin!(caller);
        // One poll starts the attempt; returning without yielding leaves its task unpolled.
        assert!(futures::FutureExt::now_or_never(caller.as_mut()).is_none());
    });
    assert_eq!(table.phase(&dest(10)), Some(Phase::Connecting));
    assert_eq!(
        dials.load(Ordering::SeqCst),
        0,
        "the attempt task was polled"
    );
    drop(doomed);
    assert_eq!(table.phase(&dest(10)), None, "the dest stayed Connecting");
}

/// `remove` during an attempt aborts it: the waiters get `Cancelled`, the dest is
/// absent, and the next call dials again.
#[tokio::test(start_paused = true)]
async fn remove_aborts_the_attempt_and_the_next_call_dials() {
    let table = table::<u64>(Duration::from_secs(60), Duration::from_secs(60));
    let dials = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let (table, dials) = (table.clone(), dials.clone());
        tokio::spawn(async move {
            let connect = counted(&dials, Duration::from_secs(30), || Ok(1));
            table.get_or_connect(&dest(5), connect).await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(table.phase(&dest(5)), Some(Phase::Connecting));
    assert_eq!(table.remove(&dest(5)), None);
    let result = timeout(BOUND, waiter).await.expect("waiter hung").unwrap();
    assert!(
        matches!(result, Err(ConnectError::Cancelled { .. })),
        "{result:?}"
    );
    assert!(!table.contains(&dest(5)));
    let value = table
        .get_or_connect(&dest(5), counted(&dials, Duration::ZERO, || Ok(2)))
        .await
        .unwrap();
    assert_eq!(value, 2);
    assert_eq!(dials.load(Ordering::SeqCst), 2);
}

/// A caller that gives up (its future is dropped) does not cancel the attempt: another
/// waiter still gets the value, and it is stored without a second dial.
#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_does_not_cancel_the_attempt() {
    let table = table::<u64>(Duration::from_secs(60), Duration::from_secs(60));
    let dials = Arc::new(AtomicUsize::new(0));
    let six = dest(6);
    let impatient =
        table.get_or_connect(&six, counted(&dials, Duration::from_millis(100), || Ok(3)));
    assert!(
        timeout(Duration::from_millis(10), impatient).await.is_err(),
        "the attempt finished before the caller gave up"
    );
    assert_eq!(table.phase(&dest(6)), Some(Phase::Connecting));
    let value = table
        .get_or_connect(&dest(6), counted(&dials, Duration::ZERO, || Ok(99)))
        .await
        .unwrap();
    assert_eq!(value, 3, "the second caller did not join the first attempt");
    assert_eq!(dials.load(Ordering::SeqCst), 1);
}

/// A connect function that panics clears the entry, gives every waiter `Panicked` and
/// counts as a failure for the backoff.
#[tokio::test(start_paused = true)]
async fn a_panicking_connect_function_clears_the_entry() {
    let table = table::<u64>(Duration::from_secs(5), Duration::from_millis(100));
    let result = table
        .get_or_connect(&dest(7), |_| async {
            tokio::task::yield_now().await;
            panic!("connect function panics on purpose");
        })
        .await;
    assert!(
        matches!(result, Err(ConnectError::Panicked { .. })),
        "{result:?}"
    );
    assert_eq!(table.phase(&dest(7)), None);
    assert_eq!(table.retry_in(&dest(7)), Some(Duration::from_millis(100)));
}

/// The accessors report only what is stored: `get` never dials, `mark_failed` clears a
/// connected entry so the next call reconnects, `remove` forgets it.
#[tokio::test]
async fn accessors_and_mark_failed() {
    let table = table::<u64>(Duration::from_secs(5), Duration::from_millis(100));
    let dials = Arc::new(AtomicUsize::new(0));
    assert!(table.is_empty());
    assert_eq!(table.get(&dest(8)), None);
    for n in [8, 9] {
        table
            .get_or_connect(&dest(n), counted(&dials, Duration::ZERO, move || Ok(n)))
            .await
            .unwrap();
    }
    assert_eq!(table.len(), 2);
    assert!(table.contains(&dest(9)));
    let mut listed = table.list();
    listed.sort();
    assert_eq!(
        listed,
        [(dest(8), Phase::Connected), (dest(9), Phase::Connected)]
    );
    assert_eq!(table.mark_failed(&dest(8)), Some(8));
    assert_eq!(table.mark_failed(&dest(8)), None);
    assert_eq!(table.get(&dest(8)), None);
    let again = table
        .get_or_connect(&dest(8), counted(&dials, Duration::ZERO, || Ok(80)))
        .await
        .unwrap();
    assert_eq!(again, 80);
    assert_eq!(dials.load(Ordering::SeqCst), 3);
    assert_eq!(table.remove(&dest(9)), Some(9));
    assert_eq!(table.len(), 1);
}

/// Callers that join an attempt at the very moment it settles are never left asleep:
/// many rounds of instant attempts with racing callers all return within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_wake_up_when_joining_races_settling() {
    let table = table::<u64>(Duration::from_secs(5), Duration::from_millis(1));
    let dials = Arc::new(AtomicUsize::new(0));
    for round in 0..300 {
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (table, dials) = (table.clone(), dials.clone());
                tokio::spawn(async move {
                    let dials2 = Arc::clone(&dials);
                    table
                        .get_or_connect(&dest(1_000 + round), move |_| async move {
                            dials2.fetch_add(1, Ordering::SeqCst);
                            Ok(round)
                        })
                        .await
                })
            })
            .collect();
        let results = timeout(BOUND, futures::future::join_all(callers))
            .await
            .unwrap_or_else(|_| panic!("a caller slept through round {round}"));
        for result in results {
            assert_eq!(result.unwrap().unwrap(), round);
        }
    }
    assert_eq!(dials.load(Ordering::SeqCst), 300, "one dial per dest");
}

/// With a real `WireBuilder`, 100 concurrent first callers open exactly one wire: the
/// listener accepts one and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_open_one_wire_set() {
    type Wires = Arc<tokio::sync::Mutex<Vec<Wire>>>;
    let network = InprocNetwork::new();
    let mut listener = network.bind(42).unwrap();
    let table: ConnectOnce<Wires> = ConnectOnce::new(ConnectOnceConfig::default());
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let (table, network) = (table.clone(), network.clone());
            tokio::spawn(async move {
                table
                    .get_or_connect(&dest(42), move |dest| async move {
                        let wires = network.connect(&dest).await?;
                        Ok(Arc::new(tokio::sync::Mutex::new(wires)))
                    })
                    .await
            })
        })
        .collect();
    for result in timeout(BOUND, futures::future::join_all(callers))
        .await
        .expect("callers did not return")
    {
        assert_eq!(result.unwrap().unwrap().lock().await.len(), 1);
    }
    timeout(BOUND, listener.accept())
        .await
        .expect("no wire was accepted")
        .unwrap();
    assert!(
        timeout(Duration::from_millis(100), listener.accept())
            .await
            .is_err(),
        "a second wire was opened"
    );
}
