//! `plexus-console`: attaches to the procs at the given locations and shows their actors
//! live, or prints one merged snapshot with `--json`. See `plexus-console --help`.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use plexus_core::Location;
use plexus_monitor::console::{
    ConsoleArgs, ConsoleError, SnapshotSource, SourceError, USAGE, print_json, run_live,
};

#[tokio::main]
async fn main() -> ExitCode {
    let args = match ConsoleArgs::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("plexus-console: {error}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plexus-console: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &ConsoleArgs) -> Result<(), ConsoleError> {
    let sources = args
        .locations
        .iter()
        .map(source_for)
        .collect::<Result<Vec<_>, _>>()?;
    if args.json {
        print_json(&sources, &args.options, &mut std::io::stdout().lock()).await
    } else {
        run_live(&sources, &args.options).await
    }
}

/// The source that reads the monitor service of the procs at `location`.
///
/// Sources are built without connecting; each connects on its first fetch. The
/// gateway-backed source plugs in here, as a `WireSource` whose carrier is a remote ask
/// to `MONITOR_ACTOR_NAME` at `location`; until it does, this build reaches no location.
fn source_for(location: &Location) -> Result<Box<dyn SnapshotSource>, SourceError> {
    Err(SourceError::NoTransport {
        location: location.to_string(),
    })
}
