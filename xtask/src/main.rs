//! Project tasks, run as `cargo xtask <task>`.
//!
//! Each task lives in its own module (`ci`, `bench`, `fuzz`; `members` reads the
//! workspace manifests for `ci`). This file parses the command line into a [`Task`],
//! runs it, and holds the few helpers every task shares: finding the repository root
//! and running a command with inherited stdio.
//! The crate depends on std only, so `cargo xtask` builds in seconds on a fresh clone.

mod bench;
mod ci;
mod fuzz;
mod members;

use std::{
    env,
    ffi::OsString,
    fmt, io,
    path::{Path, PathBuf},
    process::{Command, ExitCode, ExitStatus},
};

/// The text printed for `cargo xtask --help` and after a usage error.
const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  ci [--stress]                  run fmt, clippy, tests, docs and examples as CI does;
                                 --stress also runs the ignored stress tests
  bench [args...]                run the plexus-bench binary in release mode,
                                 passing args through (e.g. --json, workload names)
  fuzz [--seconds N] [target]    run every fuzz target, or only `target`, for N
                                 seconds each (default 60); needs nightly and cargo-fuzz
  help                           print this message
";

/// Parses the command line, runs the chosen task and turns its outcome into an exit code.
fn main() -> ExitCode {
    let outcome = parse_args(env::args_os().skip(1)).and_then(run);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(TaskError::Usage(message)) => {
            eprintln!("error: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One invocation of `cargo xtask`, decided from the command line.
#[derive(Debug, PartialEq, Eq)]
enum Task {
    /// Print the usage text.
    Help,
    /// Run the CI checks.
    Ci(ci::Options),
    /// Run the benchmark binary with these arguments.
    Bench(Vec<String>),
    /// Run the fuzz targets.
    Fuzz(fuzz::Options),
}

/// Turns the arguments after `cargo xtask` into a [`Task`].
///
/// `--help` after `ci` or `fuzz` asks for the usage text; after `bench` it is passed
/// through, so the benchmark binary can print its own help.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Task, TaskError> {
    let args = args
        .into_iter()
        .map(|arg| {
            arg.into_string().map_err(|arg| {
                TaskError::Usage(format!(
                    "argument `{}` is not valid UTF-8",
                    arg.to_string_lossy()
                ))
            })
        })
        .collect::<Result<Vec<String>, TaskError>>()?;
    let Some((task, rest)) = args.split_first() else {
        return Err(TaskError::Usage("no task given".to_owned()));
    };
    let wants_help = rest.iter().any(|arg| arg == "--help" || arg == "-h");
    match task.as_str() {
        "help" | "--help" | "-h" => Ok(Task::Help),
        "ci" | "fuzz" if wants_help => Ok(Task::Help),
        "ci" => ci::Options::parse(rest).map(Task::Ci),
        "fuzz" => fuzz::Options::parse(rest).map(Task::Fuzz),
        "bench" => Ok(Task::Bench(rest.to_vec())),
        other => Err(TaskError::Usage(format!("unknown task `{other}`"))),
    }
}

/// Runs one task to completion.
fn run(task: Task) -> Result<(), TaskError> {
    match task {
        Task::Help => {
            print_usage();
            Ok(())
        }
        Task::Ci(options) => ci::run(&options),
        Task::Bench(args) => bench::run(&args),
        Task::Fuzz(options) => fuzz::run(&options),
    }
}

/// Prints the usage text to stdout, where asked-for help belongs (it can be piped to a pager).
#[allow(clippy::print_stdout)]
fn print_usage() {
    print!("{USAGE}");
}

/// Why a task failed, worded for the person at the terminal.
#[derive(Debug)]
pub(crate) enum TaskError {
    /// The command line does not match any task's usage.
    Usage(String),
    /// The repository root could not be derived from the xtask manifest directory.
    NoRepoRoot,
    /// A command could not be started at all (e.g. the program is not on `PATH`).
    Spawn {
        /// The command as it would be typed.
        command: String,
        /// The error from the operating system.
        source: io::Error,
    },
    /// A command ran and exited unsuccessfully.
    CommandFailed {
        /// The command as it would be typed.
        command: String,
        /// How it exited.
        status: ExitStatus,
    },
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },
    /// A `Cargo.toml` does not have the shape a task relies on.
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A tool the task needs is not installed.
    MissingTool {
        /// What is missing.
        tool: &'static str,
        /// The command that installs it.
        install: &'static str,
    },
    /// The fuzz crate, or a fuzz target in it, does not exist.
    NoFuzzTargets {
        /// What was looked for and where.
        problem: String,
    },
    /// A CI step failed; later steps did not run.
    StepFailed {
        /// The step's name, as printed before it started.
        step: String,
        /// What went wrong in it.
        source: Box<TaskError>,
    },
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) => f.write_str(message),
            Self::NoRepoRoot => write!(
                f,
                "cannot find the repository root: {} has no parent directory",
                env!("CARGO_MANIFEST_DIR")
            ),
            Self::Spawn { command, source } => {
                write!(f, "could not start `{command}`: {source}")
            }
            Self::CommandFailed { command, status } => {
                write!(f, "`{command}` failed ({status})")
            }
            Self::Read { path, source } => {
                write!(f, "could not read {}: {source}", path.display())
            }
            Self::Manifest { path, problem } => write!(f, "{}: {problem}", path.display()),
            Self::MissingTool { tool, install } => {
                write!(f, "{tool} is not installed; install it with `{install}`")
            }
            Self::NoFuzzTargets { problem } => f.write_str(problem),
            Self::StepFailed { step, source } => {
                write!(f, "ci step `{step}` failed: {source}")
            }
        }
    }
}

impl std::error::Error for TaskError {}

/// The repository root: the parent of the directory holding xtask's `Cargo.toml`.
///
/// `cargo run` (behind `cargo xtask`) sets `CARGO_MANIFEST_DIR` for the program it runs,
/// so the run-time value comes first: the compile-time one is baked into the binary, and
/// cargo reuses a build copied from another checkout (workspace paths are relative in its
/// fingerprints), which would then run every task against that other checkout. The
/// compile-time value is the fallback when the binary is run directly.
pub(crate) fn repo_root() -> Result<PathBuf, TaskError> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .ok_or(TaskError::NoRepoRoot)
}

/// A `cargo` command for the toolchain that is running `cargo xtask`.
///
/// Cargo tells the programs it runs where it lives in `CARGO`; using it keeps every
/// step on the same toolchain even when `PATH` would find another one.
pub(crate) fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

/// Runs `command` with inherited stdio and waits for it; a non-zero exit is an error.
pub(crate) fn run_command(command: &mut Command) -> Result<(), TaskError> {
    let status = command.status().map_err(|source| TaskError::Spawn {
        command: describe(command),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(TaskError::CommandFailed {
            command: describe(command),
            status,
        })
    }
}

/// The command as a person would type it: the program's file name, then its arguments,
/// with environment variables the command sets written in front.
pub(crate) fn describe(command: &Command) -> String {
    let mut words = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            words.push(format!(
                "{}=\"{}\"",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    let program = Path::new(command.get_program());
    words.push(
        program
            .file_name()
            .unwrap_or(program.as_os_str())
            .to_string_lossy()
            .into_owned(),
    );
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a command line given as plain strings.
    fn parse(args: &[&str]) -> Result<Task, TaskError> {
        parse_args(args.iter().map(OsString::from))
    }

    /// `ci`, `bench` and `fuzz` each select their task, with their options parsed.
    #[test]
    fn each_task_name_selects_its_task() {
        assert_eq!(
            parse(&["ci"]).unwrap(),
            Task::Ci(ci::Options { stress: false })
        );
        assert_eq!(
            parse(&["ci", "--stress"]).unwrap(),
            Task::Ci(ci::Options { stress: true })
        );
        assert_eq!(
            parse(&["bench", "--json", "ping"]).unwrap(),
            Task::Bench(vec!["--json".to_owned(), "ping".to_owned()])
        );
        assert_eq!(
            parse(&["fuzz", "frame"]).unwrap(),
            Task::Fuzz(fuzz::Options {
                seconds: 60,
                target: Some("frame".to_owned())
            })
        );
    }

    /// Help is given for `help`, `--help`, `-h`, and `--help` after `ci` or `fuzz`.
    #[test]
    fn help_is_recognised_before_and_after_a_task() {
        for args in [
            &["help"][..],
            &["--help"],
            &["-h"],
            &["ci", "--help"],
            &["fuzz", "-h"],
        ] {
            assert_eq!(parse(args).unwrap(), Task::Help, "args: {args:?}");
        }
    }

    /// `--help` after `bench` reaches the benchmark binary instead of printing our usage.
    #[test]
    fn bench_passes_help_through() {
        assert_eq!(
            parse(&["bench", "--help"]).unwrap(),
            Task::Bench(vec!["--help".to_owned()])
        );
    }

    /// No task, or a task we do not know, is a usage error.
    #[test]
    fn missing_or_unknown_task_is_a_usage_error() {
        assert!(matches!(parse(&[]), Err(TaskError::Usage(_))));
        assert!(matches!(parse(&["deploy"]), Err(TaskError::Usage(_))));
    }

    /// The repository root is the directory that holds the workspace `Cargo.toml`.
    #[test]
    fn repo_root_holds_the_workspace_manifest() {
        let root = repo_root().unwrap();
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("xtask").is_dir());
    }

    /// A command is described with its environment first, then the program's file name.
    #[test]
    fn describe_reads_like_a_shell_line() {
        let mut command = Command::new("/usr/bin/cargo");
        command
            .args(["doc", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings");
        assert_eq!(
            describe(&command),
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc --no-deps"
        );
    }

    /// A command that exits non-zero is reported as failed, not as a spawn error.
    #[test]
    fn failing_command_is_reported_with_its_status() {
        let result = run_command(&mut Command::new("false"));
        assert!(matches!(result, Err(TaskError::CommandFailed { .. })));
    }

    /// A program that does not exist is reported as a spawn error naming it.
    #[test]
    fn missing_program_is_a_spawn_error() {
        let result = run_command(&mut Command::new("xtask-no-such-program"));
        let Err(error @ TaskError::Spawn { .. }) = result else {
            panic!("expected a spawn error, got {result:?}");
        };
        assert!(error.to_string().contains("xtask-no-such-program"));
    }
}
