//! The peer process of the cluster workloads: the benchmark binary re-executed with
//! [`ROLE_ENV`] set. It runs one proc on its own gateway serving a loopback TCP port,
//! with the [`Counter`] exposed as `counter`, and the raw baseline listener; prints
//! `READY <proc address> <raw listener address>` and runs until its stdin closes.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use plexus_core::{BoxError, Location, Proc, ProcAddr, ProcId};
use plexus_gateway::{Attachment, Gateway, GatewayConfig, ServeHandle};
use tokio::net::TcpListener;

use super::actors::Counter;
use super::raw;

/// Set in the peer process's environment, to [`PEER_ROLE`].
pub(crate) const ROLE_ENV: &str = "PLEXUS_BENCH_ROLE";
/// The value of [`ROLE_ENV`] that makes the binary the cluster peer.
pub(crate) const PEER_ROLE: &str = "cluster-peer";
/// The name the counter is exposed under.
pub(crate) const COUNTER: &str = "counter";

/// Whether this process was started as the cluster peer.
pub(crate) fn is_peer() -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|role| role == PEER_ROLE)
}

/// Runs the peer until its stdin closes; the process's exit code says how it ended.
pub(crate) fn run() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let running = match runtime.block_on(start()) {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cluster peer: start failed: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The driver holds our stdin: when it closes (the driver is done or gone), exit. The
    // runtime's worker threads serve the gateway and the raw listener meanwhile.
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    runtime.block_on(async move {
        running.proc.shutdown().await;
        drop(running);
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    std::process::ExitCode::SUCCESS
}

/// The peer's proc and what keeps it reachable.
struct Running {
    proc: Proc,
    _gateway: Gateway,
    _server: ServeHandle,
    _attachment: Attachment,
}

async fn start() -> Result<Running, BoxError> {
    let gateway = Gateway::new(Location::Local(0), GatewayConfig::default())?;
    let server = gateway.serve("tcp://127.0.0.1:0".parse()?).await?;
    let proc = Proc::new(ProcId::unique("bench-peer"));
    let attachment = gateway.attach(&proc)?;
    let counter = proc.spawn(COUNTER, Counter::default())?;
    proc.expose_remote(&counter)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let raw_addr = listener.local_addr()?;
    tokio::spawn(raw::serve(listener));

    let addr = ProcAddr::new(proc.id().clone(), server.location().clone());
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY {addr} {raw_addr}")?;
    stdout.flush()?;
    Ok(Running {
        proc,
        _gateway: gateway,
        _server: server,
        _attachment: attachment,
    })
}
