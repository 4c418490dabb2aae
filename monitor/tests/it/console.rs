//! The console: sources fetched together merge into one view (a deadlock across procs
//! shows), a failing source is listed without hiding the others, `--json` output is the
//! merged snapshot, and the live view draws in a real terminal and gives it back on `q`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use plexus_core::{Actor, ActorRef, AskError, Context, Handler, Proc, ProcId};
use plexus_monitor::console::{
    ConsoleError, ConsoleOptions, LocalSource, ProcSource, SnapshotSource, SourceError, WireSource,
    fetch_merged, print_json,
};
use plexus_monitor::{Monitor, Snapshot};

use crate::common::{eventually, monitored, within};

/// Asks its peer inside its handler; two of them asking each other wait until `timeout`.
struct Asker {
    peer: Option<ActorRef<Asker>>,
}

impl Actor for Asker {}

struct Peer(ActorRef<Asker>);

impl Handler<Peer> for Asker {
    type Reply = ();
    async fn handle(&mut self, Peer(peer): Peer, _ctx: &mut Context<Self>) {
        self.peer = Some(peer);
    }
}

/// Asked on to the peer while `hops` lasts.
struct Around {
    hops: u32,
}

impl Handler<Around> for Asker {
    type Reply = Result<(), AskError>;
    async fn handle(&mut self, around: Around, _ctx: &mut Context<Self>) -> Self::Reply {
        match self.peer.clone().filter(|_| around.hops > 0) {
            Some(peer) => {
                let onward = Around {
                    hops: around.hops - 1,
                };
                peer.ask_timeout(onward, Duration::from_secs(5)).await?
            }
            None => Ok(()),
        }
    }
}

/// A source that never answers, as a host that accepted a connection and went silent.
struct Silent;

impl SnapshotSource for Silent {
    fn label(&self) -> &str {
        "silent"
    }

    fn fetch(&self, _grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>> {
        futures::future::pending().boxed()
    }
}

/// Two procs with a monitor each, the second served; an asker on each.
async fn two_procs() -> (Monitor, Proc, Proc, ActorRef<Asker>, ActorRef<Asker>) {
    let (left_monitor, left) = monitored("left");
    let (right_monitor, right) = monitored("right");
    right_monitor.serve_on(&right).unwrap();
    let a = left.spawn("a", Asker { peer: None }).unwrap();
    let b = right.spawn("b", Asker { peer: None }).unwrap();
    a.ask(Peer(b.clone())).await.unwrap();
    b.ask(Peer(a.clone())).await.unwrap();
    (left_monitor, left, right, a, b)
}

/// A cycle of asks whose halves are seen by two different monitors shows as one deadlock
/// in the merge of a direct source and a served one.
#[tokio::test]
async fn merged_sources_show_a_deadlock_across_procs() {
    let (left_monitor, _left, right, a, b) = two_procs().await;
    a.tell(Around { hops: 3 }).await.unwrap();
    eventually("the first asker to wait", || {
        !left_monitor.wait_for_graph().is_empty()
    })
    .await;

    let sources: Vec<Box<dyn SnapshotSource>> = vec![
        Box::new(LocalSource::new(left_monitor.clone())),
        Box::new(ProcSource::new(right.clone())),
    ];
    let options = ConsoleOptions::default();
    let mut deadlocks = Vec::new();
    within("the merged view to show the cycle", async {
        while deadlocks.is_empty() {
            let fetched = fetch_merged(&sources, options.grave_window, options.timeout).await;
            assert!(fetched.failures.is_empty(), "{:?}", fetched.failures);
            deadlocks = fetched.snapshot.unwrap().deadlocks();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(deadlocks.len(), 1);
    assert!(deadlocks[0].contains(a.id()) && deadlocks[0].contains(b.id()));
    // Each monitor alone sees one edge, no cycle.
    assert!(left_monitor.deadlocks().is_empty());
}

/// A source without a monitor service and a silent one are listed as failures with their
/// reasons, while the answering source still fills the view.
#[tokio::test]
async fn failing_sources_are_listed_beside_the_view() {
    let (monitor, proc) = monitored("answers");
    let unserved = Proc::new(ProcId::unique("unserved"));
    let sources: Vec<Box<dyn SnapshotSource>> = vec![
        Box::new(ProcSource::new(unserved)),
        Box::new(LocalSource::new(monitor)),
        Box::new(Silent),
    ];
    let _idle = proc.spawn("idle", Asker { peer: None }).unwrap();
    let timeout = Duration::from_millis(200);
    let fetched = within(
        "the fetch to end at the timeout",
        fetch_merged(&sources, Duration::from_secs(10), timeout),
    )
    .await;
    assert_eq!(fetched.snapshot.unwrap().totals.alive, 1);
    let failures: Vec<(&str, &SourceError)> = fetched
        .failures
        .iter()
        .map(|failure| (failure.label.as_str(), &failure.error))
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        matches!(failures[0].1, SourceError::Refused { reason, .. } if reason.contains("$monitor")),
        "{failures:?}"
    );
    assert_eq!(failures[1].0, "silent");
    assert!(matches!(failures[1].1, SourceError::TimedOut { after, .. } if *after == timeout));
}

/// A wire source passes on its carrier's failure and refuses a reply that is not a
/// snapshot, naming its location in both.
#[tokio::test]
async fn wire_source_reports_carrier_and_reply_errors() {
    let down = WireSource::new("tcp://127.0.0.1:9", |_request: Vec<u8>| {
        futures::future::ready(Err(SourceError::Unreachable {
            location: "tcp://127.0.0.1:9".to_owned(),
            reason: "connection refused".to_owned(),
        }))
        .boxed()
    });
    let garbled = WireSource::new("garbled", |request: Vec<u8>| {
        // Echoes the request: bytes, but not a snapshot.
        futures::future::ready(Ok(request)).boxed()
    });
    let sources: Vec<Box<dyn SnapshotSource>> = vec![Box::new(down), Box::new(garbled)];
    let fetched = within(
        "the wire fetches",
        fetch_merged(&sources, Duration::from_secs(10), Duration::from_secs(5)),
    )
    .await;
    assert!(fetched.snapshot.is_none());
    let errors: Vec<String> = fetched
        .failures
        .iter()
        .map(|failure| failure.error.to_string())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0],
        "cannot reach tcp://127.0.0.1:9: connection refused"
    );
    assert!(
        errors[1].starts_with("unreadable snapshot from garbled: "),
        "{errors:?}"
    );
}

/// `--json` writes the merged snapshot of every source, and nothing at all when a source
/// fails.
#[tokio::test]
async fn json_output_is_the_merged_snapshot() {
    let (left_monitor, _left, right, a, b) = two_procs().await;
    let mut sources: Vec<Box<dyn SnapshotSource>> = vec![
        Box::new(LocalSource::new(left_monitor)),
        Box::new(ProcSource::new(right)),
    ];
    let options = ConsoleOptions::default().timeout(Duration::from_millis(200));
    let mut out = Vec::new();
    within(
        "the JSON snapshot",
        print_json(&sources, &options, &mut out),
    )
    .await
    .unwrap();
    let decoded: Snapshot = serde_json::from_slice(&out).unwrap();
    assert!(decoded.actor(a.id()).is_some() && decoded.actor(b.id()).is_some());
    // a, b and the right proc's service.
    assert_eq!(decoded.totals.alive, 3);

    sources.push(Box::new(Silent));
    let mut out = Vec::new();
    let failed = within(
        "the failed JSON snapshot",
        print_json(&sources, &options, &mut out),
    )
    .await;
    assert!(
        matches!(&failed, Err(ConsoleError::Sources { total: 3, failures }) if failures.len() == 1),
        "{failed:?}"
    );
    assert!(out.is_empty(), "a partial snapshot was written");
}

/// A tmux server on a socket of its own, killed with everything in it on drop.
pub(crate) struct Tmux {
    pub(crate) socket: String,
}

impl Tmux {
    /// Whether tmux can be run here; tests that need a terminal skip without it.
    pub(crate) fn available() -> bool {
        Command::new("tmux").arg("-V").output().is_ok()
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux could not be run")
    }

    pub(crate) fn screen(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", "console"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls the screen until `done` holds; fails with `what` and the last screen after
    /// `limit`.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The example `name`, built again when any source it is made of is newer than the
/// binary: `cargo test` builds examples only when no test target is named, and a stale
/// binary would test old code. A run that built it fresh (`cargo test` with no target, as
/// CI runs) pays no second build with other features.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/it-<hash> → target/<profile>/examples/<name>
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let example = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().unwrap();
    let built = modified(&example);
    let sources = [
        manifest_dir.join("src"),
        manifest_dir.join("examples"),
        manifest_dir.join("Cargo.toml"),
        workspace.join("core").join("src"),
        workspace.join("codec").join("src"),
        workspace.join("transport").join("src"),
        workspace.join("gateway").join("src"),
        workspace.join("Cargo.lock"),
    ];
    if built.is_none_or(|built| sources.iter().any(|source| newer_than(source, built))) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "plexus-monitor",
                "--features",
                "console",
            ])
            .args(["--example", name])
            .current_dir(&manifest_dir);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building the {name} example failed");
    }
    assert!(example.exists(), "no example at {}", example.display());
    example
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// Whether `path`, or any file under it, was modified after `than`.
fn newer_than(path: &std::path::Path, than: std::time::SystemTime) -> bool {
    if modified(path).is_some_and(|at| at > than) {
        return true;
    }
    std::fs::read_dir(path).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|entry| newer_than(&entry.path(), than))
    })
}

/// In a real terminal (a tmux pane), the live view of `console_local` shows its actors
/// from both sources with the cross-proc deadlock and the stuck handler marked; `q`
/// ends it with status 0, off the alternate screen and out of raw mode.
#[test]
fn console_draws_in_a_terminal_and_quits_on_q() {
    drive_console_local("q", Quit::Key("q"));
}

/// Ctrl-C, which raw mode turns into a key instead of a signal, quits the view the same
/// way and gives the terminal back.
#[test]
fn console_quits_on_ctrl_c() {
    drive_console_local("ctrl-c", Quit::Key("C-c"));
}

/// SIGTERM (a `kill` from another terminal, a service manager stopping the session) ends
/// the view the same way: the terminal comes back out of raw mode and off the alternate
/// screen instead of being left raw by a killed process.
#[test]
fn console_gives_the_terminal_back_on_sigterm() {
    drive_console_local("sigterm", Quit::Signal("TERM"));
}

/// How a test ends the live view.
enum Quit {
    /// A tmux key name sent to the pane.
    Key(&'static str),
    /// A signal name for `kill -s`, sent to the console process.
    Signal(&'static str),
}

/// Runs `console_local` in a tmux pane of its own, checks the live view, ends it with
/// `quit` and checks that the console exited and restored the terminal.
fn drive_console_local(tag: &str, quit: Quit) {
    if !Tmux::available() {
        eprintln!("skipped: tmux is not installed, so no terminal can be driven");
        return;
    }
    let example = example("console_local");
    let tmux = Tmux {
        socket: format!("plexus-console-test-{}-{tag}", std::process::id()),
    };
    // After the console exits, the shell reports its status and whether the terminal is
    // back in canonical mode (`icanon`) or still raw (`-icanon`), then stays for capture.
    let script = format!(
        "'{}'; echo exit=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-*icanon'; sleep 60",
        example.display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "console",
        "-x",
        "160",
        "-y",
        "40",
        &script,
    ]);
    assert!(
        started.status.success(),
        "tmux did not start: {}",
        String::from_utf8_lossy(&started.stderr)
    );

    // Actor indices start at a random point per proc, so rows are matched up to the index.
    let expected = [
        "plexus console · 2 sources",
        "app#1/counter.",
        "app#1/worker.",
        "edge#2/$monitor.",
        "edge#2/cruncher.",
        "DEADLOCK  app#1/alice.",
        "STUCK     edge#2/cruncher.",
    ];
    let screen = tmux.wait_for("the live view", Duration::from_secs(30), |screen| {
        expected.iter().all(|text| screen.contains(text))
    });
    let cycle: Vec<&str> = screen
        .lines()
        .find_map(|line| line.trim_end().strip_prefix("DEADLOCK  "))
        .unwrap_or_else(|| panic!("no deadlock line:\n{screen}"))
        .split(" → ")
        .collect();
    assert!(
        cycle.len() == 3
            && cycle[0].starts_with("app#1/alice.")
            && cycle[1].starts_with("edge#2/bob.")
            && cycle[2] == cycle[0],
        "the cycle is not alice → bob → alice: {cycle:?}"
    );
    let stuck = screen
        .lines()
        .find(|line| line.starts_with("STUCK     edge#2/cruncher."))
        .unwrap_or_else(|| panic!("no stuck line:\n{screen}"));
    let handling = stuck
        .strip_prefix("STUCK     ")
        .and_then(|rest| rest.split_once(" handling "));
    assert!(
        handling.is_some_and(|(id, what)| !id.contains(' ') && what.starts_with("Crunch")),
        "{stuck}"
    );
    let alice = screen
        .lines()
        .find(|line| line.starts_with(&format!("{} ", cycle[0])))
        .unwrap_or_else(|| panic!("no row for alice:\n{screen}"));
    assert!(alice.contains("DEADLOCK"), "{alice}");

    match quit {
        Quit::Key(key) => {
            let sent = tmux.run(&["send-keys", "-t", "console", key]);
            assert!(sent.status.success(), "tmux could not send the key");
        }
        Quit::Signal(signal) => {
            // The pane runs a shell whose one child is the console.
            let panes = tmux.run(&["list-panes", "-t", "console", "-F", "#{pane_pid}"]);
            let shell = String::from_utf8_lossy(&panes.stdout).trim().to_owned();
            let children = Command::new("pgrep").args(["-P", &shell]).output().unwrap();
            let console = String::from_utf8_lossy(&children.stdout).trim().to_owned();
            assert!(
                !console.is_empty() && !console.contains('\n'),
                "not one console process under the pane's shell {shell}: {console:?}"
            );
            let killed = Command::new("kill")
                .args(["-s", signal, &console])
                .status()
                .unwrap();
            assert!(killed.success(), "kill -s {signal} {console} failed");
        }
    }
    let screen = tmux.wait_for("the console to exit", Duration::from_secs(10), |screen| {
        screen.contains("exit=") && screen.contains("icanon")
    });
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"console closed"), "{screen}");
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

/// The binary prints its usage on `--help` and refuses a command line it cannot use with
/// status 2 and a message naming the problem, before touching the terminal.
#[test]
fn binary_checks_its_command_line() {
    let console = env!("CARGO_BIN_EXE_plexus-console");
    let help = Command::new(console).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("usage: plexus-console"));

    for (args, message) in [
        (&[][..], "no proc or location given"),
        (
            &["--interval", "0s", "app#1@tcp://127.0.0.1:7000"][..],
            "`--interval` must be longer than zero",
        ),
        (&["app#1@udp://127.0.0.1:7000"][..], "invalid scheme"),
    ] {
        let refused = Command::new(console).args(args).output().unwrap();
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(refused.stdout.is_empty());
    }
}
