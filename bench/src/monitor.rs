//! `monitor_overhead`: what the monitor costs on the hot path. The `local_tell` workload
//! (one sender task, one actor, 1,000,000 `u64` tells with `tell().await` into the
//! default 1024-message mailbox, closed by an ask so that every tell has been handled) runs
//! on a proc with a [`Monitor`] installed and on one without, alternating, in the same run.
//! The figure is the monitored rate; the baseline the unmonitored one.

use std::time::Instant;

use plexus_core::{Actor, Context, Handler, Proc, ProcId};
use plexus_monitor::Monitor;

use crate::report::Report;

const WORKLOAD: &str = "monitor_overhead";
const UNIT: &str = "msg/s";
const MESSAGES: u64 = 1_000_000;
/// Rounds of each kind, alternating so that drift of the machine hits both alike; the
/// median of each kind is reported, so one disturbed round does not decide the ratio.
const ROUNDS: usize = 9;

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
    let mut with = Vec::with_capacity(ROUNDS);
    let mut without = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        without.push(local_tell(None).await?);
        with.push(local_tell(Some(&Monitor::new())).await?);
    }
    let (plexus, baseline) = (median(&mut with), median(&mut without));
    let ratio = if baseline > 0.0 {
        plexus / baseline
    } else {
        0.0
    };
    Ok(Report::new(WORKLOAD, UNIT, plexus, baseline, ratio)
        .target(0.9)
        .note(format!(
            "local_tell with vs without the monitor, median of {ROUNDS} alternating rounds of \
         {MESSAGES} tells; with {:.0}..{:.0}, without {:.0}..{:.0} msg/s; target ratio >= 0.9",
            with[0],
            with[ROUNDS - 1],
            without[0],
            without[ROUNDS - 1],
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

/// Sorts the rounds and returns the middle one.
fn median(rounds: &mut [f64]) -> f64 {
    rounds.sort_by(f64::total_cmp);
    rounds.get(rounds.len() / 2).copied().unwrap_or(0.0)
}

fn failed(why: String) -> Report {
    Report::new(WORKLOAD, UNIT, 0.0, 0.0, 0.0).note(format!("not measured: {why}"))
}
