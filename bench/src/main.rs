//! The plexus benchmark binary: every workload measured against its baseline in the same
//! run. Usage: `plexus-bench [--json] [--quick] [workload-name-substring...]` (`--quick`
//! shrinks the remote and cluster workloads tenfold). Started with `PLEXUS_BENCH_ROLE`
//! set, the binary is instead the peer process of the cluster workloads.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

mod alloc;
mod cluster;
mod codec;
mod local;
mod monitor;
mod remote;
mod report;

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
                println!("usage: plexus-bench [--json] [--quick] [workload-name-substring...]");
                println!(
                    "workloads: local_tell local_ask local_fan_in spawn monitor_overhead codec_encode codec_decode remote_tell remote_ask \
                     cluster_remote_tell cluster_remote_ask cluster_remote_fan_in"
                );
                return std::process::ExitCode::SUCCESS;
            }
            _ => patterns.push(arg),
        }
    }
    let filter = |workload: &str| {
        patterns.is_empty() || patterns.iter().any(|p| workload.contains(p.as_str()))
    };
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
    for report in &reports {
        if json {
            println!("{}", report.json());
        } else {
            println!("{}", report.text());
        }
    }
    std::process::ExitCode::SUCCESS
}
