//! A node process: a proc on its own gateway serving a loopback TCP port, with a sink, a
//! driver and a staller; it prints `READY <proc address>` and runs until its stdin closes.

use plexus::{BoxError, Gateway, GatewayConfig, Location, Proc, ProcAddr, ProcId};
use tokio::io::AsyncReadExt;

use crate::ROLE_ENV;
use crate::actors::{Driver, Sink, Staller};

pub(crate) async fn run() -> Result<(), BoxError> {
    let label = std::env::var(ROLE_ENV)?;
    let gateway = Gateway::new(Location::Local(0), GatewayConfig::default())?;
    let server = gateway.serve("tcp://127.0.0.1:0".parse()?).await?;
    let proc = Proc::new(ProcId::unique(label.clone()));
    let _attachment = gateway.attach(&proc)?;

    let sink = proc.spawn("sink", Sink::default())?;
    proc.expose_remote(&sink)?;
    let driver = proc.spawn("driver", Driver::new(&label))?;
    proc.expose_remote(&driver)?;
    let staller = proc.spawn("staller", Staller)?;
    proc.expose_remote(&staller)?;
    crate::supervision::register_kinds(&proc)?;
    crate::conversation::spawn_node_side(&proc)?;

    println!(
        "READY {}",
        ProcAddr::new(proc.id().clone(), server.location().clone())
    );
    // The hub holds our stdin: when it closes (the hub is done or gone), exit.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    proc.shutdown().await;
    Ok(())
}
