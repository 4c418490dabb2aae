//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure.
//!
//! The steps are, cheapest and most likely to fail first:
//!
//! ```text
//! fmt → clippy → test → test <crate> alone (one per library) → doc → examples [→ stress]
//! ```
//!
//! "Alone" means `cargo test -p <crate> --no-default-features`: in a workspace build,
//! features are unified across crates, so a crate that only compiles because a sibling
//! switched a feature on goes unnoticed until it is tested by itself.
//!
//! The libraries come from the root manifest's `[workspace] members` (see `members`),
//! except the packages in `NOT_TESTED_ALONE`.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::{TaskError, cargo, describe, members, repo_root, run_command};

/// Packages that are workspace members but are not libraries to test alone.
const NOT_TESTED_ALONE: &[&str] = &["xtask", "plexus-bench"];

/// The options of `cargo xtask ci`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// Also run the tests marked `#[ignore]` (the stress tests) after the other steps.
    pub(crate) stress: bool,
}

impl Options {
    /// Parses the arguments after `ci`.
    pub(crate) fn parse(args: &[String]) -> Result<Self, TaskError> {
        let mut options = Self { stress: false };
        for arg in args {
            match arg.as_str() {
                "--stress" => options.stress = true,
                other => {
                    return Err(TaskError::Usage(format!(
                        "unexpected argument `{other}` for `ci`"
                    )));
                }
            }
        }
        Ok(options)
    }
}

/// One named command of the CI run.
struct Step {
    /// The short name printed before the step starts and in the summary.
    name: String,
    /// The command the step runs.
    command: Command,
}

/// How long a step that ran took, and whether it passed.
struct Timing {
    /// The step's name.
    name: String,
    /// Wall-clock time from start to exit.
    elapsed: Duration,
    /// Whether the step succeeded.
    passed: bool,
}

/// Runs every CI step in order, printing each step's name and duration, and a summary
/// at the end; stops at the first failing step and returns its error.
pub(crate) fn run(options: &Options) -> Result<(), TaskError> {
    let root = repo_root()?;
    let steps = plan(&root, options)?;
    let mut timings = Vec::with_capacity(steps.len());
    for Step { name, mut command } in steps {
        eprintln!("\n==> {name}: {}", describe(&command));
        let start = Instant::now();
        let result = run_command(&mut command);
        let elapsed = start.elapsed();
        let passed = result.is_ok();
        eprintln!(
            "<== {name}: {} in {}",
            if passed { "ok" } else { "FAILED" },
            format_duration(elapsed)
        );
        timings.push(Timing {
            name: name.clone(),
            elapsed,
            passed,
        });
        if let Err(source) = result {
            eprintln!("{}", summary(&timings));
            return Err(TaskError::StepFailed {
                step: name,
                source: Box::new(source),
            });
        }
    }
    eprintln!("{}", summary(&timings));
    Ok(())
}

/// The steps of a CI run, in order, with every command set to run in `root`.
fn plan(root: &Path, options: &Options) -> Result<Vec<Step>, TaskError> {
    let mut steps = vec![
        step("fmt", &["fmt", "--all", "--check"]),
        step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
        step("test", &["test", "--workspace", "--all-features"]),
    ];
    let libraries = members::libraries(root)?;
    let tested_alone = libraries
        .iter()
        .filter(|package| !NOT_TESTED_ALONE.contains(&package.as_str()));
    for package in tested_alone {
        steps.push(step(
            &format!("test {package} alone"),
            &["test", "-p", package, "--no-default-features"],
        ));
    }
    let mut doc = step(
        "doc",
        &["doc", "--workspace", "--no-deps", "--all-features"],
    );
    doc.command.env("RUSTDOCFLAGS", "-D warnings");
    steps.push(doc);
    steps.push(step(
        "examples",
        &["build", "--workspace", "--examples", "--all-features"],
    ));
    if options.stress {
        steps.push(step(
            "stress",
            &["test", "--workspace", "--all-features", "--", "--ignored"],
        ));
    }
    for step in &mut steps {
        step.command.current_dir(root);
    }
    Ok(steps)
}

/// A step named `name` that runs `cargo` with `args`.
fn step(name: &str, args: &[&str]) -> Step {
    let mut command = cargo();
    command.args(args);
    Step {
        name: name.to_owned(),
        command,
    }
}

/// The summary table printed at the end of a run (or at its first failure).
fn summary(timings: &[Timing]) -> String {
    let total: Duration = timings.iter().map(|timing| timing.elapsed).sum();
    let width = timings
        .iter()
        .map(|timing| timing.name.len())
        .chain(["step".len(), "total".len()])
        .max()
        .unwrap_or(0);
    let row = |name: &str, elapsed: Duration, mark: &str| {
        format!("  {name:<width$}  {:>10}{mark}", format_duration(elapsed))
    };
    let mut lines = vec![String::new(), "ci summary".to_owned()];
    lines.push(format!("  {:<width$}  {:>10}", "step", "time"));
    for timing in timings {
        let mark = if timing.passed { "" } else { "  FAILED" };
        lines.push(row(&timing.name, timing.elapsed, mark));
    }
    lines.push(row("total", total, ""));
    lines.join("\n")
}

/// A duration as seconds with one decimal, with minutes in front once it passes one.
fn format_duration(duration: Duration) -> String {
    let tenths = duration.as_millis() / 100;
    let (minutes, tenths) = (tenths / 600, tenths % 600);
    let (seconds, tenth) = (tenths / 10, tenths % 10);
    if minutes == 0 {
        format!("{seconds}.{tenth}s")
    } else {
        format!("{minutes}m {seconds:02}.{tenth}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan runs fmt first and examples last, and stress only when asked.
    #[test]
    fn plan_orders_steps_and_adds_stress_on_request() {
        let root = repo_root().unwrap();
        let names = |stress| -> Vec<String> {
            plan(&root, &Options { stress })
                .unwrap()
                .into_iter()
                .map(|step| step.name)
                .collect()
        };
        let normal = names(false);
        assert_eq!(normal[..3], ["fmt", "clippy", "test"]);
        assert_eq!(normal[normal.len() - 2..], ["doc", "examples"]);
        assert!(normal.contains(&"test plexus-core alone".to_owned()));
        assert!(!normal.iter().any(|name| name.contains("xtask")));
        let stressed = names(true);
        assert_eq!(stressed.last().map(String::as_str), Some("stress"));
        assert_eq!(stressed.len(), normal.len() + 1);
    }

    /// The doc step denies rustdoc warnings through `RUSTDOCFLAGS`.
    #[test]
    fn doc_step_denies_warnings() {
        let steps = plan(&repo_root().unwrap(), &Options { stress: false }).unwrap();
        let doc = steps.iter().find(|step| step.name == "doc").unwrap();
        assert!(describe(&doc.command).starts_with("RUSTDOCFLAGS=\"-D warnings\" "));
    }

    /// Only `--stress` is accepted after `ci`.
    #[test]
    fn ci_options_accept_only_stress() {
        assert_eq!(Options::parse(&[]).unwrap(), Options { stress: false });
        assert_eq!(
            Options::parse(&["--stress".to_owned()]).unwrap(),
            Options { stress: true }
        );
        assert!(matches!(
            Options::parse(&["--fast".to_owned()]),
            Err(TaskError::Usage(_))
        ));
    }

    /// Durations read as seconds under a minute and as minutes and seconds above.
    #[test]
    fn durations_are_formatted_for_people() {
        assert_eq!(format_duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(format_duration(Duration::from_millis(59_990)), "59.9s");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m 00.0s");
        assert_eq!(format_duration(Duration::from_millis(754_300)), "12m 34.3s");
    }

    /// The summary lists every step that ran, marks the failed one and ends with the total.
    #[test]
    fn summary_lists_steps_marks_failure_and_totals() {
        let timings = [
            Timing {
                name: "fmt".to_owned(),
                elapsed: Duration::from_secs(1),
                passed: true,
            },
            Timing {
                name: "clippy".to_owned(),
                elapsed: Duration::from_secs(2),
                passed: false,
            },
        ];
        let table = summary(&timings);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines
                .iter()
                .any(|line| line.contains("fmt") && line.ends_with("1.0s"))
        );
        assert!(
            lines
                .iter()
                .any(|line| line.contains("clippy") && line.ends_with("FAILED"))
        );
        assert!(
            lines
                .last()
                .is_some_and(|line| line.contains("total") && line.ends_with("3.0s"))
        );
    }
}
