//! `cargo xtask fuzz`: every fuzz target in `fuzz/` (or one), each for a bounded time.
//!
//! The fuzz crate sits outside the workspace and is driven by `cargo-fuzz` on the nightly
//! toolchain; this task checks both are there before it starts, so a missing tool is
//! reported with the command that installs it instead of a cargo error.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use crate::{TaskError, run_command};

/// Seconds each target runs when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;

/// The options of `cargo xtask fuzz`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// How long each target runs, passed to libFuzzer as `-max_total_time`.
    pub(crate) seconds: u64,
    /// The only target to run; all targets when `None`.
    pub(crate) target: Option<String>,
}

impl Options {
    /// Parses the arguments after `fuzz`: `[--seconds N] [target]`.
    pub(crate) fn parse(args: &[String]) -> Result<Self, TaskError> {
        let mut options = Self {
            seconds: DEFAULT_SECONDS,
            target: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if let Some(value) = arg.strip_prefix("--seconds=") {
                options.seconds = parse_seconds(value)?;
            } else if arg == "--seconds" {
                let value = args
                    .next()
                    .ok_or_else(|| TaskError::Usage("`--seconds` needs a value".to_owned()))?;
                options.seconds = parse_seconds(value)?;
            } else if arg.starts_with('-') {
                return Err(TaskError::Usage(format!(
                    "unexpected option `{arg}` for `fuzz`"
                )));
            } else if options.target.is_some() {
                return Err(TaskError::Usage(format!(
                    "`fuzz` takes at most one target, got another: `{arg}`"
                )));
            } else {
                options.target = Some(arg.clone());
            }
        }
        Ok(options)
    }
}

/// A positive number of seconds.
fn parse_seconds(value: &str) -> Result<u64, TaskError> {
    match value.parse::<u64>() {
        Ok(seconds) if seconds > 0 => Ok(seconds),
        _ => Err(TaskError::Usage(format!(
            "`--seconds` must be a positive whole number, got `{value}`"
        ))),
    }
}

/// Checks the tools, lists the targets and runs each one for `options.seconds`, stopping
/// at the first target that finds a crash.
pub(crate) fn run(options: &Options) -> Result<(), TaskError> {
    require_tools()?;
    let fuzz_dir = crate::repo_root()?.join("fuzz");
    if !fuzz_dir.join("Cargo.toml").is_file() {
        return Err(TaskError::NoFuzzTargets {
            problem: format!(
                "no fuzz crate: {} does not exist",
                fuzz_dir.join("Cargo.toml").display()
            ),
        });
    }
    let available = list_targets(&fuzz_dir)?;
    let targets = select_targets(available, options.target.as_deref())?;
    for target in targets {
        eprintln!("\n==> fuzz {target} for {}s", options.seconds);
        let mut command = nightly_cargo();
        command
            .current_dir(&fuzz_dir)
            .args(["fuzz", "run", &target, "--"])
            .arg(format!("-max_total_time={}", options.seconds));
        run_command(&mut command)?;
    }
    Ok(())
}

/// `cargo +nightly`, through the rustup proxy on `PATH`.
///
/// Not the `CARGO` that runs xtask: that is one toolchain's own binary, which does not
/// understand `+nightly`.
fn nightly_cargo() -> Command {
    let mut command = Command::new("cargo");
    command.arg("+nightly");
    command
}

/// Fails with the install command if the nightly toolchain or cargo-fuzz is missing.
fn require_tools() -> Result<(), TaskError> {
    if !succeeds_quietly(nightly_cargo().arg("--version"))? {
        return Err(TaskError::MissingTool {
            tool: "the nightly toolchain",
            install: "rustup toolchain install nightly",
        });
    }
    if !succeeds_quietly(nightly_cargo().args(["fuzz", "--version"]))? {
        return Err(TaskError::MissingTool {
            tool: "cargo-fuzz",
            install: "cargo install cargo-fuzz",
        });
    }
    Ok(())
}

/// Whether `command` exits successfully, with its output discarded.
fn succeeds_quietly(command: &mut Command) -> Result<bool, TaskError> {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .map_err(|source| TaskError::Spawn {
            command: crate::describe(command),
            source,
        })
}

/// The target names printed by `cargo +nightly fuzz list` in `fuzz_dir`.
fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>, TaskError> {
    let mut command = nightly_cargo();
    command
        .current_dir(fuzz_dir)
        .args(["fuzz", "list"])
        .stderr(Stdio::inherit());
    let output = command.output().map_err(|source| TaskError::Spawn {
        command: crate::describe(&command),
        source,
    })?;
    if !output.status.success() {
        return Err(TaskError::CommandFailed {
            command: crate::describe(&command),
            status: output.status,
        });
    }
    Ok(parse_target_list(&String::from_utf8_lossy(&output.stdout)))
}

/// One target name per non-empty line.
fn parse_target_list(listing: &str) -> Vec<String> {
    listing
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The targets to run: all of `available`, or only `wanted`, which must be one of them.
fn select_targets(available: Vec<String>, wanted: Option<&str>) -> Result<Vec<String>, TaskError> {
    match wanted {
        None if available.is_empty() => Err(TaskError::NoFuzzTargets {
            problem: "`cargo fuzz list` found no fuzz targets in fuzz/".to_owned(),
        }),
        None => Ok(available),
        Some(wanted) if available.iter().any(|target| target == wanted) => {
            Ok(vec![wanted.to_owned()])
        }
        Some(wanted) => Err(TaskError::NoFuzzTargets {
            problem: format!(
                "no fuzz target `{wanted}`; the targets are: {}",
                available.join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses arguments given as plain strings.
    fn parse(args: &[&str]) -> Result<Options, TaskError> {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        Options::parse(&args)
    }

    /// Without arguments every target runs for the default 60 seconds.
    #[test]
    fn no_arguments_mean_all_targets_for_sixty_seconds() {
        assert_eq!(
            parse(&[]).unwrap(),
            Options {
                seconds: 60,
                target: None
            }
        );
    }

    /// `--seconds` is accepted as two words or with `=`, before or after the target.
    #[test]
    fn seconds_and_target_parse_in_any_order() {
        let expected = Options {
            seconds: 5,
            target: Some("frame".to_owned()),
        };
        assert_eq!(parse(&["--seconds", "5", "frame"]).unwrap(), expected);
        assert_eq!(parse(&["frame", "--seconds=5"]).unwrap(), expected);
    }

    /// A missing, zero or non-numeric duration, an unknown option or a second target is a
    /// usage error.
    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["--seconds"][..],
            &["--seconds", "0"],
            &["--seconds=ten"],
            &["--verbose"],
            &["frame", "envelope"],
        ] {
            assert!(
                matches!(parse(args), Err(TaskError::Usage(_))),
                "args: {args:?}"
            );
        }
    }

    /// The listing is read one target per line, ignoring blank lines and spacing.
    #[test]
    fn target_list_is_one_name_per_line() {
        assert_eq!(
            parse_target_list("frame\n  envelope \n\n"),
            ["frame", "envelope"]
        );
    }

    /// A named target runs alone if it exists and is an error naming the choices if not.
    #[test]
    fn a_named_target_must_exist() {
        let available = || vec!["frame".to_owned(), "envelope".to_owned()];
        assert_eq!(
            select_targets(available(), Some("frame")).unwrap(),
            ["frame"]
        );
        assert_eq!(select_targets(available(), None).unwrap(), available());
        let error = select_targets(available(), Some("nope")).unwrap_err();
        assert!(error.to_string().contains("frame, envelope"), "{error}");
        assert!(select_targets(Vec::new(), None).is_err());
    }
}
