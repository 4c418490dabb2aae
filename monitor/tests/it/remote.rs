//! The console across processes, over TCP on 127.0.0.1: a `GatewaySource` reads a
//! served monitor through a gateway and maps every failure to a `SourceError` (also a
//! process killed between fetches); the `plexus-console` binary merges two OS processes
//! into one view in which an ask cycle across them is a deadlock, fails `--json` whole
//! when one proc is unreachable, and draws a remote process live in a terminal.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plexus_core::{ActorId, Location, Proc, ProcAddr, ProcId};
use plexus_gateway::{Attachment, Gateway, GatewayConfig, ServeHandle};
use plexus_monitor::console::{ConsoleLink, SnapshotSource, SourceError, fetch_merged};
use plexus_monitor::{MONITOR_ACTOR_NAME, Monitor, MonitorService, Snapshot, SnapshotRequest};

use crate::common::{Gate, Hold, within};
use crate::console::{Tmux, example};

/// A monitored proc on a gateway serving a loopback TCP port, as a program in another
/// process would run it; everything is dropped with it.
struct Served {
    monitor: Monitor,
    proc: Proc,
    addr: ProcAddr,
    _attachment: Attachment,
    _server: ServeHandle,
    _gateway: Gateway,
}

async fn served(label: &str) -> Served {
    let gateway = Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap();
    let server = gateway
        .serve("tcp://127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let monitor = Monitor::new();
    let proc = Proc::builder(ProcId::unique(label))
        .observer(monitor.observer())
        .build();
    let attachment = gateway.attach(&proc).unwrap();
    let addr = ProcAddr::new(proc.id().clone(), server.location().clone());
    Served {
        monitor,
        proc,
        addr,
        _attachment: attachment,
        _server: server,
        _gateway: gateway,
    }
}

fn names(snapshot: &Snapshot) -> Vec<&str> {
    let mut names: Vec<&str> = snapshot.actors.iter().map(|a| a.id.name()).collect();
    names.sort_unstable();
    names
}

/// A served monitor is a remote actor like any other: found by name with
/// `lookup_remote::<MonitorService>` and asked for its snapshot.
#[tokio::test]
async fn served_monitor_is_found_and_asked_as_a_remote_actor() {
    let app = served("app").await;
    app.monitor.serve_on(&app.proc).unwrap();
    let _gate = app.proc.spawn("gate", Gate).unwrap();
    let link = ConsoleLink::new().unwrap();

    let service = within(
        "the lookup",
        link.proc()
            .lookup_remote::<MonitorService>(&app.addr, MONITOR_ACTOR_NAME),
    )
    .await
    .unwrap();
    assert!(service.is_remote());
    assert_eq!(service.id().proc(), app.proc.id());
    let snapshot = within(
        "the snapshot",
        service.ask_timeout(
            SnapshotRequest::new(Duration::from_secs(10)),
            Duration::from_secs(5),
        ),
    )
    .await
    .unwrap();
    assert_eq!(names(&snapshot), ["$monitor", "gate"]);
}

/// A gateway source reads the served monitor; it reports a location nobody listens on
/// and a proc not attached there as unreachable, a proc without a served monitor as a
/// refusal, and finds a service served again after the first one stopped.
#[tokio::test]
async fn gateway_source_reads_and_maps_failures() {
    let app = served("app").await;
    let service = app.monitor.serve_on(&app.proc).unwrap();
    let gate = app.proc.spawn("gate", Gate).unwrap();
    let (_release, held) = tokio::sync::oneshot::channel();
    gate.tell(Hold(held)).await.unwrap();
    let unserved = served("unserved").await;
    let link = ConsoleLink::new().unwrap();
    let timeout = Duration::from_secs(5);
    let grave = Duration::from_secs(10);

    let source = link.source(app.addr.clone()).timeout(timeout);
    assert_eq!(source.label(), app.addr.to_string());
    let snapshot = within("the first fetch", source.fetch(grave))
        .await
        .unwrap();
    assert_eq!(names(&snapshot), ["$monitor", "gate"]);
    let gate_row = snapshot.actor(gate.id()).unwrap();
    assert!(gate_row.handling.is_some(), "the gate is in its handler");

    // Nobody listens on a port that was just freed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = ProcAddr::new(
        ProcId::new("app", 1),
        format!("tcp://127.0.0.1:{closed_port}").parse().unwrap(),
    );
    let stranger = ProcAddr::new(ProcId::new("stranger", 7), app.addr.location.clone());
    let sources: Vec<Box<dyn SnapshotSource>> = vec![
        Box::new(link.source(nowhere).timeout(timeout)),
        Box::new(link.source(stranger).timeout(timeout)),
        Box::new(link.source(unserved.addr.clone()).timeout(timeout)),
    ];
    let fetched = within(
        "the failing fetches",
        fetch_merged(&sources, grave, timeout),
    )
    .await;
    assert!(fetched.snapshot.is_none());
    let errors: Vec<&SourceError> = fetched.failures.iter().map(|f| &f.error).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        matches!(errors[0], SourceError::Unreachable { location, .. } if location.ends_with(&closed_port.to_string())),
        "{errors:?}"
    );
    // The gateway there was reached and has no such proc: refused, naming it.
    assert!(
        matches!(errors[1], SourceError::Refused { location, reason } if location.starts_with("stranger#7@") && reason.contains("stranger#7")),
        "{errors:?}"
    );
    assert!(
        matches!(errors[2], SourceError::Refused { reason, .. } if reason.contains("$monitor")),
        "{errors:?}"
    );

    // The service stops: refused; served again: found again by the same source.
    service.stop();
    service.wait_for_stop().await;
    let refused = within("the fetch after the stop", source.fetch(grave)).await;
    assert!(
        matches!(refused, Err(SourceError::Refused { .. })),
        "{refused:?}"
    );
    app.monitor.serve_on(&app.proc).unwrap();
    let again = within("the fetch after serving again", source.fetch(grave))
        .await
        .unwrap();
    assert!(again.actors.iter().any(|a| a.id.name() == "gate"));
}

/// An example process, killed on drop; its stdin stays open while it runs.
struct Node {
    child: Child,
    addr: ProcAddr,
    lines: mpsc::Receiver<String>,
}

impl Node {
    /// Starts the `console_remote` example with `args` and waits for its proc address.
    fn start(args: &[&str]) -> Node {
        let mut child = Command::new(example("console_remote"))
            .args(args)
            .args(["--for", "120"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            addr: ProcAddr::new(ProcId::new("none", 0), Location::Local(0)),
            lines,
        };
        let line = node.line_starting("PROC ");
        node.addr = line["PROC ".len()..].parse().unwrap();
        node
    }

    /// The next line of output starting with `prefix`, within 20 seconds.
    fn line_starting(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(error) => panic!("no `{prefix}` line from the example: {error}"),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `plexus-console --json --timeout 5s` on `procs` (proc addresses or locations);
/// fails the test if it takes longer than 20 seconds.
fn run_console_json<T: ToString>(procs: &[T]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus-console"))
        .args(["--json", "--timeout", "5s"])
        .args(procs.iter().map(ToString::to_string))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("plexus-console --json did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs `plexus-console --json` on `procs` (proc addresses or locations) and returns its
/// snapshot; fails the test if it exits with an error.
fn console_json<T: ToString>(procs: &[T]) -> Snapshot {
    let output = run_console_json(procs);
    assert!(
        output.status.success(),
        "plexus-console --json failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Checked as plain JSON first, so the test does not rest on this crate's own decoder.
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(json["actors"].is_array(), "{json}");
    serde_json::from_value(json).unwrap()
}

/// The id of the actor named `ring` in the proc at `addr`.
fn ring_of(snapshot: &Snapshot, addr: &ProcAddr) -> ActorId {
    snapshot
        .actors
        .iter()
        .find(|a| a.id.proc() == &addr.proc && a.id.name() == "ring")
        .unwrap_or_else(|| panic!("no ring actor of {addr} in {snapshot:#?}"))
        .id
        .clone()
}

/// Whom the actor `id` waits for in `snapshot`.
fn waits_of(snapshot: &Snapshot, id: &ActorId) -> Vec<ActorId> {
    let actor = snapshot.actor(id).unwrap();
    actor.waiting_for.iter().map(|w| w.target.clone()).collect()
}

/// A deadlock across two OS processes: the ring actor in the first asks the one in the
/// second, which asks back while the first still waits. Each process's monitor holds one
/// edge, naming the other process's actor, and no cycle; the real `plexus-console
/// --json` over both prints a merged snapshot whose wait-for graph has the cycle, and the
/// library's `fetch_merged` over two gateway sources finds the same.
#[test]
fn deadlock_across_two_os_processes() {
    let first = Node::start(&["--ring"]);
    let peer = first.addr.to_string();
    let second = Node::start(&["--ring", "--peer", &peer]);
    second.line_starting("CYCLE ");

    // The cycle forms once the asks have crossed; poll the merged view until it shows.
    let deadline = Instant::now() + Duration::from_secs(20);
    let merged = loop {
        let merged = console_json(&[&first.addr, &second.addr]);
        if !merged.deadlocks().is_empty() || Instant::now() > deadline {
            break merged;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ring_1 = ring_of(&merged, &first.addr);
    let ring_2 = ring_of(&merged, &second.addr);

    // Each half alone: one edge to the other process's actor, no cycle. An empty edge
    // list here means remote asks record no wait-for edge.
    let alone_1 = console_json(&[&first.addr]);
    let alone_2 = console_json(&[&second.addr]);
    assert_eq!(
        waits_of(&alone_1, &ring_1),
        std::slice::from_ref(&ring_2),
        "the first process's ring must wait for the second's (a remote ask's wait-for edge)"
    );
    assert_eq!(
        waits_of(&alone_2, &ring_2),
        std::slice::from_ref(&ring_1),
        "the second process's ring must wait for the first's (a remote ask's wait-for edge)"
    );
    assert!(alone_1.deadlocks().is_empty() && alone_2.deadlocks().is_empty());

    let deadlocks = merged.deadlocks();
    assert_eq!(deadlocks.len(), 1, "{deadlocks:?}");
    assert_eq!(deadlocks[0].actors.len(), 2, "{deadlocks:?}");
    assert!(deadlocks[0].contains(&ring_1) && deadlocks[0].contains(&ring_2));
    assert_ne!(ring_1.proc(), ring_2.proc());

    // Given only the two locations, the console finds the monitored procs there itself.
    let by_location = console_json(&[&first.addr.location, &second.addr.location]);
    assert_eq!(by_location.deadlocks(), deadlocks);

    // The same through the library, as the live view fetches.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let found = runtime.block_on(async {
        let link = ConsoleLink::new().unwrap();
        let sources: Vec<Box<dyn SnapshotSource>> = vec![
            Box::new(link.source(first.addr.clone())),
            Box::new(link.source(second.addr.clone())),
        ];
        let timeout = Duration::from_secs(5);
        let fetched = within(
            "the library's merged fetch",
            fetch_merged(&sources, Duration::from_secs(10), timeout),
        )
        .await;
        assert!(fetched.failures.is_empty(), "{:?}", fetched.failures);
        fetched.snapshot.unwrap().deadlocks()
    });
    assert_eq!(found, deadlocks);
}

/// `plexus-console --json` over a live proc and one nobody serves prints nothing and
/// exits with status 1, naming the proc it could not reach.
#[test]
fn json_fails_whole_when_a_proc_is_unreachable() {
    let shop = Node::start(&[]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone: ProcAddr = format!("gone#1@tcp://{}", closed.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(closed);

    let output = run_console_json(&[&shop.addr, &gone]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "a partial snapshot was printed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 of 2 sources failed")
            && stderr.contains(&format!("cannot reach {gone}")),
        "{stderr}"
    );
    // The live proc alone still answers.
    assert!(console_json(&[&shop.addr]).actors.len() >= 5);
}

/// A monitored process that dies between two fetches is reported unreachable by the
/// next one, while the other source still fills the view.
#[test]
fn a_killed_process_is_reported_unreachable() {
    let mut doomed = Node::start(&[]);
    let survivor = Node::start(&["--ring"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let link = runtime.block_on(async { ConsoleLink::new() }).unwrap();
    let timeout = Duration::from_secs(5);
    let sources: Vec<Box<dyn SnapshotSource>> = vec![
        Box::new(link.source(doomed.addr.clone()).timeout(timeout)),
        Box::new(link.source(survivor.addr.clone()).timeout(timeout)),
    ];
    let grave = Duration::from_secs(10);
    let fetch = |sources| {
        runtime.block_on(within(
            "a merged fetch",
            fetch_merged(sources, grave, timeout),
        ))
    };
    let before = fetch(&sources);
    assert!(before.failures.is_empty(), "{:?}", before.failures);

    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    // Unreachable rather than TimedOut: the loss is noticed, not waited out.
    let after = fetch(&sources);
    assert_eq!(after.failures.len(), 1, "{:?}", after.failures);
    assert!(
        matches!(&after.failures[0].error, SourceError::Unreachable { location, .. } if *location == doomed.addr.to_string()),
        "{:?}",
        after.failures
    );
    let survivors = after.snapshot.unwrap();
    assert!(
        survivors
            .actors
            .iter()
            .all(|a| a.id.proc() == &survivor.addr.proc)
    );
    assert!(!survivors.actors.is_empty());
}

/// In a real terminal (a tmux pane), `plexus-console <proc address>` shows the actors of
/// the `console_remote` example running as another process, with its deadlock and stuck
/// handler marked; `q` ends it with status 0 and gives the terminal back.
#[test]
fn console_shows_a_remote_process_in_a_terminal() {
    if !Tmux::available() {
        eprintln!("skipped: tmux is not installed, so no terminal can be driven");
        return;
    }
    let shop = Node::start(&[]);
    let proc = shop.addr.proc.to_string();
    let tmux = Tmux {
        socket: format!("plexus-console-remote-test-{}", std::process::id()),
    };
    let script = format!(
        "'{}' --interval 250ms '{}'; echo exit=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-*icanon'; sleep 60",
        env!("CARGO_BIN_EXE_plexus-console"),
        shop.addr
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "console",
        "-x",
        "200",
        "-y",
        "40",
        &script,
    ]);
    assert!(
        started.status.success(),
        "tmux did not start: {}",
        String::from_utf8_lossy(&started.stderr)
    );

    let expected = [
        "plexus console · 1 source".to_owned(),
        format!("{proc}/$monitor."),
        format!("{proc}/counter."),
        format!("{proc}/cruncher."),
        format!("{proc}/alice."),
        format!("{proc}/bob."),
        format!("STUCK     {proc}/cruncher."),
    ];
    let screen = tmux.wait_for("the live view", Duration::from_secs(30), |screen| {
        expected.iter().all(|text| screen.contains(text.as_str())) && screen.contains("DEADLOCK  ")
    });
    let cycle = screen
        .lines()
        .find(|line| line.starts_with("DEADLOCK  "))
        .unwrap();
    assert!(
        cycle.contains(&format!("{proc}/alice.")) && cycle.contains(&format!("{proc}/bob.")),
        "{cycle}"
    );

    let sent = tmux.run(&["send-keys", "-t", "console", "q"]);
    assert!(sent.status.success(), "tmux could not send the key");
    let screen = tmux.wait_for("the console to exit", Duration::from_secs(10), |screen| {
        screen.contains("exit=") && screen.contains("icanon")
    });
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"exit=0"), "{screen}");
    assert!(
        lines.contains(&"icanon"),
        "the terminal was left raw:\n{screen}"
    );
    assert!(
        !screen.contains("ACTOR"),
        "the alternate screen was not left:\n{screen}"
    );
}
