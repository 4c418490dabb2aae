//! `monitor_overhead`: what the monitor costs on the hot path. The `local_tell` workload
//! (one sender task, one actor, 1,000,000 `u64` tells with `tell().await` into the
//! default 1024-message mailbox, closed by an ask so that every tell has been handled) runs
//! on a proc with a [`Monitor`] installed and on one without, in the same run.
//!
//! On a small virtual machine one round's rate swings by a third with the host's load, far
//! more than the monitor's cost, so the rounds are paired: each pair runs one round of
//! each kind back to back, in alternating order (without-with, then with-without), and the
//! ratio is the median over the pairs of monitored / unmonitored rate. A pair shares the
//! machine's state of that moment, and the alternating order cancels a steady drift. The
//! figure and the baseline shown are the median rates of each kind.

use std::time::Instant;

use plexus_core::{Actor, Context, Handler, Proc, ProcId};
use plexus_monitor::Monitor;

use crate::report::Report;

const WORKLOAD: &str = "monitor_overhead";
const UNIT: &str = "msg/s";
const MESSAGES: u64 = 1_000_000;
/// Pairs of rounds (one of each kind); the median pair decides, so a few disturbed
/// rounds do not.
const PAIRS: usize = 21;

/// Adds up what it is told.
struct Sink {
    sum: u64,
}

impl Actor for Sink {}

impl Handler<u64> for Sink {
    type Reply = ();
    async fn handle(&mut self, n: u64, _ctx: &mut Context<Self>) {
        self.sum = self.sum.wrapping_add(n);
    }
}

/// Answered with the sum so far: queued behind every tell, so its reply means all were
/// handled.
struct Total;

impl Handler<Total> for Sink {
    type Reply = u64;
    async fn handle(&mut self, _: Total, _ctx: &mut Context<Self>) -> u64 {
        self.sum
    }
}

/// Runs `monitor_overhead` if `filter` selects it.
pub(crate) fn run(filter: &dyn Fn(&str) -> bool) -> Vec<Report> {
    if !filter(WORKLOAD) {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return vec![failed(format!("cannot build the runtime: {error}"))],
    };
    match runtime.block_on(measure()) {
        Ok(report) => vec![report],
        Err(error) => vec![failed(error)],
    }
}

async fn measure() -> Result<Report, String> {
    // One unmeasured round of each warms the allocator, the caches and the thread pool.
    local_tell(None).await?;
    local_tell(Some(&Monitor::new())).await?;
    let mut with = Vec::with_capacity(PAIRS);
    let mut without = Vec::with_capacity(PAIRS);
    let mut ratios = Vec::with_capacity(PAIRS);
    for pair in 0..PAIRS {
        let (plain, monitored) = if pair % 2 == 0 {
            let plain = local_tell(None).await?;
            (plain, local_tell(Some(&Monitor::new())).await?)
        } else {
            let monitored = local_tell(Some(&Monitor::new())).await?;
            (local_tell(None).await?, monitored)
        };
        if plain > 0.0 {
            ratios.push(monitored / plain);
        }
        with.push(monitored);
        without.push(plain);
    }
    let ratio = median(&mut ratios);
    let quartiles = (quantile(&ratios, 1, 4), quantile(&ratios, 3, 4));
    let (plexus, baseline) = (median(&mut with), median(&mut without));
    Ok(Report::new(WORKLOAD, UNIT, plexus, baseline, ratio)
        .target(0.9)
        .note(format!(
            "local_tell with vs without the monitor: median over {PAIRS} back-to-back pairs \
             (alternating order) of {MESSAGES} tells each of monitored/unmonitored rate; pair \
             ratios' quartiles {:.3}..{:.3}; rates with {:.0}..{:.0}, without {:.0}..{:.0} \
             msg/s; target ratio >= 0.9",
            quartiles.0,
            quartiles.1,
            with[0],
            with[PAIRS - 1],
            without[0],
            without[PAIRS - 1],
        )))
}

/// Tells per second from one sender task to one actor on a fresh proc, monitored or not.
async fn local_tell(monitor: Option<&Monitor>) -> Result<f64, String> {
    let mut builder = Proc::builder(ProcId::unique("bench-monitor"));
    if let Some(monitor) = monitor {
        builder = builder.observer(monitor.observer());
    }
    let proc = builder.build();
    let sink = proc
        .spawn("sink", Sink { sum: 0 })
        .map_err(|error| error.to_string())?;
    let sender = tokio::spawn(async move {
        let started = Instant::now();
        for n in 0..MESSAGES {
            sink.tell(n).await.map_err(|error| error.to_string())?;
        }
        let total = sink.ask(Total).await.map_err(|error| error.to_string())?;
        Ok::<_, String>((started.elapsed(), total))
    });
    let (elapsed, total) = sender.await.map_err(|error| error.to_string())??;
    proc.shutdown().await;
    let expected = MESSAGES * (MESSAGES - 1) / 2;
    if total != expected {
        return Err(format!("the sink added up to {total}, not {expected}"));
    }
    Ok(MESSAGES as f64 / elapsed.as_secs_f64())
}

/// Sorts the values and returns the middle one.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The value `num/den` of the way through `sorted` (sorted ascending).
fn quantile(sorted: &[f64], num: usize, den: usize) -> f64 {
    sorted.get(sorted.len() * num / den).copied().unwrap_or(0.0)
}

fn failed(why: String) -> Report {
    Report::new(WORKLOAD, UNIT, 0.0, 0.0, 0.0).note(format!("not measured: {why}"))
}
