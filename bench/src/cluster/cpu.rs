//! CPU time of the two processes of the cluster workloads, so a report can say what each
//! side spends per message: on a shared machine the rates move with the load, the CPU
//! spent per message much less.

/// Nanoseconds on CPU of every live thread of process `pid`, from
/// `/proc/<pid>/task/*/schedstat`; `None` where there is no such file (not Linux).
fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may end between the listing and the read; its time is lost with it.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Reads the CPU time of this process and of the peer.
pub(crate) struct CpuMeter {
    peer: u32,
}

/// CPU time of both processes at one moment, in nanoseconds.
#[derive(Clone, Copy)]
pub(crate) struct CpuSample {
    driver: u64,
    peer: u64,
}

/// CPU spent per message on each side, in nanoseconds.
#[derive(Clone, Copy)]
pub(crate) struct CpuPerMessage {
    pub(crate) driver: f64,
    pub(crate) peer: f64,
}

impl CpuMeter {
    pub(crate) fn new(peer: u32) -> Self {
        CpuMeter { peer }
    }

    pub(crate) fn sample(&self) -> Option<CpuSample> {
        Some(CpuSample {
            driver: process_cpu_ns(std::process::id())?,
            peer: process_cpu_ns(self.peer)?,
        })
    }

    /// The CPU each side spent per message since `before`.
    pub(crate) fn per_message(
        &self,
        before: Option<CpuSample>,
        messages: u64,
    ) -> Option<CpuPerMessage> {
        let (before, after) = (before?, self.sample()?);
        Some(CpuPerMessage {
            driver: after.driver.saturating_sub(before.driver) as f64 / messages as f64,
            peer: after.peer.saturating_sub(before.peer) as f64 / messages as f64,
        })
    }
}

/// "driver+peer" CPU per message of `plexus` and `baseline`, medians over the runs, or
/// nothing when the CPU time could not be read.
pub(crate) fn note(
    plexus: &[Option<CpuPerMessage>],
    baseline: &[Option<CpuPerMessage>],
) -> Option<String> {
    let (plexus, baseline) = (median(plexus)?, median(baseline)?);
    Some(format!(
        "CPU per message driver+peer: plexus {:.0}+{:.0} ns, baseline {:.0}+{:.0} ns",
        plexus.driver, plexus.peer, baseline.driver, baseline.peer
    ))
}

fn median(runs: &[Option<CpuPerMessage>]) -> Option<CpuPerMessage> {
    let runs: Option<Vec<CpuPerMessage>> = runs.iter().copied().collect();
    let runs = runs?;
    if runs.is_empty() {
        return None;
    }
    let pick = |field: fn(&CpuPerMessage) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(field).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Some(CpuPerMessage {
        driver: pick(|cpu| cpu.driver),
        peer: pick(|cpu| cpu.peer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's own CPU time is readable and grows while it computes.
    #[test]
    fn own_cpu_time_grows_with_work() {
        let Some(before) = process_cpu_ns(std::process::id()) else {
            // No /proc here: the reports leave the CPU note out, nothing to check.
            return;
        };
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = process_cpu_ns(std::process::id()).expect("still readable");
        assert!(after > before, "CPU time went from {before} to {after} ns");
    }

    /// The note takes the median of each side over the runs, and is left out when a run
    /// has no figure.
    #[test]
    fn note_uses_medians_and_needs_every_run() {
        let run = |driver, peer| Some(CpuPerMessage { driver, peer });
        let plexus = [run(3.0, 30.0), run(1.0, 10.0), run(2.0, 20.0)];
        let baseline = [run(5.0, 6.0)];
        assert_eq!(
            note(&plexus, &baseline).as_deref(),
            Some("CPU per message driver+peer: plexus 2+20 ns, baseline 5+6 ns")
        );
        assert_eq!(note(&[run(1.0, 1.0), None], &baseline), None);
    }
}
