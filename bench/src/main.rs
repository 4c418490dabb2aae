//! The plexus benchmark binary: every workload measured against its baseline in the same
//! run. Usage: `plexus-bench [--json] [--quick] [workload...]` (`--quick` shrinks the
//! remote and cluster workloads tenfold). A workload's full name runs that workload alone;
//! any other word runs every workload whose name contains it. Started with `PLEXUS_BENCH_ROLE`
//! set, the binary is instead the peer process of the cluster workloads.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

mod alloc;
mod cluster;
mod codec;
mod local;
mod monitor;
mod remote;
mod report;

/// Every workload, by name.
const WORKLOADS: [&str; 13] = [
    "local_tell",
    "local_ask",
    "local_fan_in",
    "spawn",
    "local_drain",
    "monitor_overhead",
    "codec_encode",
    "codec_decode",
    "remote_tell",
    "remote_ask",
    "cluster_remote_tell",
    "cluster_remote_ask",
    "cluster_remote_fan_in",
];

/// Adds to each remote tell workload what `local_drain` measured in the same run, as
/// fractions of that workload's baseline: no tell path that ends in one actor can do better
/// than the actor's own handling rate, and no path through a tokio channel better than the
/// channel's.
fn note_ceilings(reports: &mut [report::Report]) {
    let Some((actor, channel)) = reports
        .iter()
        .find(|report| report.workload == "local_drain")
        .map(|report| (report.plexus, report.baseline))
    else {
        return;
    };
    for report in reports
        .iter_mut()
        .filter(|report| report.workload.ends_with("remote_tell"))
    {
        report.notes.push_str(&format!(
            "; ceiling: the receiving actor alone handles {actor:.0} msg/s (local_drain), \
             {:.3} of this baseline; a bare tokio channel drains {channel:.0} msg/s, {:.3} of it",
            actor / report.baseline,
            channel / report.baseline
        ));
    }
}

/// Whether the command line's `patterns` select `workload`: all do when there are none; a
/// pattern that names a workload exactly selects only that one (so `remote_tell` does not
/// also run `cluster_remote_tell`); any other pattern selects the names containing it.
fn selects(patterns: &[String], workload: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|pattern| {
            if WORKLOADS.contains(&pattern.as_str()) {
                pattern == workload
            } else {
                workload.contains(pattern.as_str())
            }
        })
}

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

fn main() -> std::process::ExitCode {
    if cluster::peer::is_peer() {
        return cluster::peer::run();
    }
    let mut json = false;
    let mut quick = false;
    let mut patterns = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("usage: plexus-bench [--json] [--quick] [workload...]");
                println!("workloads: {}", WORKLOADS.join(" "));
                println!(
                    "a full name runs that workload alone; any other word runs every workload \
                     whose name contains it"
                );
                return std::process::ExitCode::SUCCESS;
            }
            _ => patterns.push(arg),
        }
    }
    let filter = |workload: &str| selects(&patterns, workload);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let mut reports = Vec::new();
    reports.extend(local::run(&runtime, &filter));
    reports.extend(remote::run(&runtime, &filter, quick));
    reports.extend(cluster::run(&runtime, &filter, quick));
    drop(runtime);
    reports.extend(monitor::run(&filter));
    reports.extend(codec::run(&filter));
    note_ceilings(&mut reports);
    for report in &reports {
        if json {
            println!("{}", report.json());
        } else {
            println!("{}", report.text());
        }
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::selects;

    fn patterns(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn a_full_name_selects_only_that_workload() {
        let remote_tell = patterns(&["remote_tell"]);
        assert!(selects(&remote_tell, "remote_tell"));
        assert!(!selects(&remote_tell, "cluster_remote_tell"));
    }

    #[test]
    fn other_words_select_by_substring_and_none_selects_all() {
        let cluster = patterns(&["cluster"]);
        assert!(selects(&cluster, "cluster_remote_ask"));
        assert!(!selects(&cluster, "remote_ask"));
        let tells = patterns(&["tell"]);
        assert!(selects(&tells, "local_tell") && selects(&tells, "cluster_remote_tell"));
        assert!(selects(&[], "spawn"));
    }
}
