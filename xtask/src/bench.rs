//! `cargo xtask bench`: the benchmark binary, built in release mode, with arguments passed through.

use crate::{TaskError, cargo, repo_root, run_command};

/// The package that holds the benchmark binary.
const BENCH_PACKAGE: &str = "plexus-bench";

/// Runs `cargo run --release -p plexus-bench -- <args>` from the repository root.
///
/// The arguments (`--json`, workload name filters, `--help`) belong to the benchmark
/// binary and are not inspected here. If the package does not exist, cargo says so.
pub(crate) fn run(args: &[String]) -> Result<(), TaskError> {
    let mut command = cargo();
    command
        .current_dir(repo_root()?)
        .args(["run", "--release", "-p", BENCH_PACKAGE, "--"])
        .args(args);
    run_command(&mut command)
}
