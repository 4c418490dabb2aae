//! The command line of `plexus-console`, parsed by hand: a handful of flags with a
//! duration each do not warrant an argument-parsing dependency.

use std::time::Duration;

use plexus_core::{Location, ParseError, ProcAddr};

use super::ConsoleOptions;

/// The usage text printed by `--help`.
pub const USAGE: &str = "\
usage: plexus-console [OPTIONS] <TARGET>...

Shows the actors of each TARGET, merged into one live table, with deadlocks and
stuck handlers highlighted. TARGET is a location (e.g. tcp://127.0.0.1:7000):
every proc attached there that serves its monitor (Monitor::serve_on) is read;
or a proc address, LABEL#INSTANCE@LOCATION (e.g. app#4242@tcp://127.0.0.1:7000),
to read that proc only. Keys: q, Esc or Ctrl-C quit.

options:
  --json                  print one merged snapshot as JSON and exit
  --interval <DURATION>   time between refreshes (default 1s)
  --stuck <DURATION>      a handler running this long is stuck (default 1s)
  --grave-window <DURATION>
                          how long stopped actors stay listed (default 10s)
  --timeout <DURATION>    how long to wait for each proc (default 2s)
  -h, --help              print this text

DURATION is a whole number with a unit: 500ms, 2s, 1m.";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsoleArgs {
    /// The procs to read, in order.
    pub procs: Vec<ProcAddr>,
    /// The locations whose procs (those serving their monitor) are all read.
    pub locations: Vec<Location>,
    /// Print one merged snapshot as JSON and exit instead of showing the live view.
    pub json: bool,
    /// Print [`USAGE`] and exit.
    pub help: bool,
    /// Refresh interval, thresholds and timeouts.
    pub options: ConsoleOptions,
}

/// A command line that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgsError {
    /// A flag this console does not know.
    #[error("unknown option `{0}` (see --help)")]
    UnknownOption(String),
    /// A flag that takes a value came last.
    #[error("option `{0}` needs a value")]
    MissingValue(&'static str),
    /// A duration without a known unit or with a bad number.
    #[error("invalid duration `{value}` for `{option}`: use a whole number with ms, s or m")]
    BadDuration {
        /// The flag.
        option: &'static str,
        /// The value given.
        value: String,
    },
    /// A refresh interval or timeout of zero.
    #[error("`{0}` must be longer than zero")]
    ZeroDuration(&'static str),
    /// A proc address that does not parse.
    #[error(transparent)]
    BadProc(#[from] ParseError),
    /// No proc or location given.
    #[error("no proc or location given (see --help)")]
    NoProc,
}

impl ConsoleArgs {
    /// Parses the arguments after the program name.
    ///
    /// ```
    /// use plexus_monitor::console::ConsoleArgs;
    /// use std::time::Duration;
    ///
    /// let args = ConsoleArgs::parse(["--interval", "500ms", "app#3@tcp://127.0.0.1:7000"])?;
    /// assert_eq!(args.options.refresh, Duration::from_millis(500));
    /// assert_eq!(args.procs[0].location.to_string(), "tcp://127.0.0.1:7000");
    /// # Ok::<(), plexus_monitor::console::ArgsError>(())
    /// ```
    pub fn parse<I, S>(args: I) -> Result<ConsoleArgs, ArgsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = ConsoleArgs {
            procs: Vec::new(),
            locations: Vec::new(),
            json: false,
            help: false,
            options: ConsoleOptions::default(),
        };
        let mut args = args.into_iter().map(|arg| arg.as_ref().to_owned());
        let mut only_procs = false;
        while let Some(arg) = args.next() {
            if only_procs || !arg.starts_with('-') {
                match target(&arg)? {
                    Target::Proc(addr) => parsed.procs.push(addr),
                    Target::Location(location) => parsed.locations.push(location),
                }
                continue;
            }
            // `--flag=value` and `--flag value` are both accepted.
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let options = &mut parsed.options;
            match flag.as_str() {
                "--" => only_procs = true,
                "-h" | "--help" => parsed.help = true,
                "--json" => parsed.json = true,
                "--interval" => {
                    options.refresh =
                        positive("--interval", duration("--interval", inline, &mut args)?)?;
                }
                "--stuck" => options.stuck_after = duration("--stuck", inline, &mut args)?,
                "--grave-window" => {
                    options.grave_window = duration("--grave-window", inline, &mut args)?;
                }
                "--timeout" => {
                    options.timeout =
                        positive("--timeout", duration("--timeout", inline, &mut args)?)?;
                }
                _ => return Err(ArgsError::UnknownOption(flag)),
            }
        }
        if parsed.procs.is_empty() && parsed.locations.is_empty() && !parsed.help {
            return Err(ArgsError::NoProc);
        }
        Ok(parsed)
    }
}

/// What one positional argument names.
enum Target {
    Proc(ProcAddr),
    Location(Location),
}

/// A proc address, or else a location (a proc address always has an `@`).
fn target(arg: &str) -> Result<Target, ArgsError> {
    if !arg.contains('@') {
        if let Ok(location) = arg.parse::<Location>() {
            return Ok(Target::Location(location));
        }
    }
    Ok(Target::Proc(arg.parse()?))
}

fn duration(
    option: &'static str,
    inline: Option<String>,
    rest: &mut impl Iterator<Item = String>,
) -> Result<Duration, ArgsError> {
    let value = inline
        .or_else(|| rest.next())
        .ok_or(ArgsError::MissingValue(option))?;
    parse_duration(&value).ok_or(ArgsError::BadDuration { option, value })
}

fn positive(option: &'static str, duration: Duration) -> Result<Duration, ArgsError> {
    if duration.is_zero() {
        Err(ArgsError::ZeroDuration(option))
    } else {
        Ok(duration)
    }
}

/// `250ms`, `2s`, `1m`.
fn parse_duration(value: &str) -> Option<Duration> {
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number.checked_mul(60)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag, in both spellings, lands in its field; locations keep their order.
    #[test]
    fn flags_and_locations_parse() {
        let args = ConsoleArgs::parse([
            "app#1@tcp://127.0.0.1:7000",
            "--json",
            "--interval=250ms",
            "--stuck",
            "3s",
            "--grave-window",
            "1m",
            "--timeout=5s",
            "edge#2@unix:///tmp/plexus.sock",
        ])
        .unwrap();
        assert!(args.json && !args.help);
        let procs: Vec<String> = args.procs.iter().map(ToString::to_string).collect();
        assert_eq!(
            procs,
            [
                "app#1@tcp://127.0.0.1:7000",
                "edge#2@unix:///tmp/plexus.sock"
            ]
        );
        assert_eq!(args.options.refresh, Duration::from_millis(250));
        assert_eq!(args.options.stuck_after, Duration::from_secs(3));
        assert_eq!(args.options.grave_window, Duration::from_secs(60));
        assert_eq!(args.options.timeout, Duration::from_secs(5));
    }

    /// Bad input is refused with an error naming what is wrong.
    #[test]
    fn bad_command_lines_are_refused() {
        assert_eq!(
            ConsoleArgs::parse::<[&str; 0], &str>([]),
            Err(ArgsError::NoProc)
        );
        assert!(ConsoleArgs::parse(["--help"]).unwrap().help);
        assert_eq!(
            ConsoleArgs::parse(["--verbose", "app#1@tcp://127.0.0.1:1"]),
            Err(ArgsError::UnknownOption("--verbose".to_owned()))
        );
        assert_eq!(
            ConsoleArgs::parse(["app#1@tcp://127.0.0.1:1", "--interval"]),
            Err(ArgsError::MissingValue("--interval"))
        );
        assert_eq!(
            ConsoleArgs::parse(["--stuck", "2h", "app#1@tcp://127.0.0.1:1"]),
            Err(ArgsError::BadDuration {
                option: "--stuck",
                value: "2h".to_owned()
            })
        );
        assert_eq!(
            ConsoleArgs::parse(["--interval", "0s", "app#1@tcp://127.0.0.1:1"]),
            Err(ArgsError::ZeroDuration("--interval"))
        );
        assert!(matches!(
            ConsoleArgs::parse(["app#1@udp://127.0.0.1:1"]),
            Err(ArgsError::BadProc(_))
        ));
        assert!(matches!(
            ConsoleArgs::parse(["app@tcp://127.0.0.1:1"]),
            Err(ArgsError::BadProc(_))
        ));
        assert!(matches!(
            ConsoleArgs::parse(["udp://127.0.0.1:7000"]),
            Err(ArgsError::BadProc(_))
        ));
    }

    /// A location alone names every monitored proc attached there.
    #[test]
    fn locations_are_targets_too() {
        let args = ConsoleArgs::parse(["tcp://127.0.0.1:7000", "app#1@tcp://127.0.0.1:1"]).unwrap();
        assert_eq!(
            args.locations,
            vec!["tcp://127.0.0.1:7000".parse::<Location>().unwrap()]
        );
        assert_eq!(args.procs.len(), 1);
    }

    /// Durations need a unit; bare numbers and overflows are refused.
    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("750ms"), Some(Duration::from_millis(750)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("3m"), Some(Duration::from_secs(180)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration(&format!("{}m", u64::MAX)), None);
    }
}
