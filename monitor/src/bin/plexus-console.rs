//! `plexus-console`: reads the monitors served on the given procs (by proc address,
//! through a gateway of its own) and shows their actors live, or prints one merged
//! snapshot with `--json`. See `plexus-console --help`.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use plexus_monitor::console::{
    ConsoleArgs, ConsoleError, ConsoleLink, SnapshotSource, USAGE, print_json, run_live,
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
    let link = ConsoleLink::new()?;
    let mut procs = args.procs.clone();
    for location in &args.locations {
        let found = link.discover(location, args.options.timeout).await?;
        if found.is_empty() {
            eprintln!("plexus-console: no proc at {location} serves its monitor");
        }
        procs.extend(found);
    }
    if procs.is_empty() {
        return Err(ConsoleError::NoSources);
    }
    let sources: Vec<Box<dyn SnapshotSource>> = procs
        .into_iter()
        .map(|addr| -> Box<dyn SnapshotSource> {
            Box::new(link.source(addr).timeout(args.options.timeout))
        })
        .collect();
    if args.json {
        print_json(&sources, &args.options, &mut std::io::stdout().lock()).await
    } else {
        run_live(&sources, &args.options).await
    }
}
