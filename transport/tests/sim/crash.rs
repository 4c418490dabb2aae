//! R6: the callee's host crashes and restarts, over 20 seeds. The loss is published once
//! per crash, no request outlives its timeout, the client reconnects to the new launch,
//! and no destination entry is left behind.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_transport::{DestEvent, RequestError, TransportError};

use crate::{
    CLIENT, SERVER, ServerLog, SimWires, client_manager, gaps, now, serve, server_dest, simulation,
    stream, tell,
};

const CRASH_AT: Duration = Duration::from_secs(2);
const RESTART_AT: Duration = Duration::from_secs(4);
const STREAM_UNTIL: Duration = Duration::from_secs(7);
/// One request every this often, each bounded by [`REQUEST_TIMEOUT`].
const REQUEST_EVERY: Duration = Duration::from_millis(50);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const SEEDS: u64 = 20;

/// How one request ended.
#[derive(Debug)]
struct Ended {
    started: Duration,
    ended: Duration,
    answered: bool,
    disconnected: bool,
}

/// What the client saw in one run.
struct Seen {
    events: Vec<&'static str>,
    requests: Vec<Ended>,
    accepted: usize,
    dests_before_close: usize,
    dests_after_close: usize,
}

fn run(seed: u64) -> (Seen, ServerLog) {
    let mut sim = simulation(seed, Duration::from_secs(30));
    let log = ServerLog::default();
    let server_log = log.clone();
    sim.host(SERVER, move || serve(server_log.clone()));
    let seen = Arc::new(Mutex::new(None));
    let out = seen.clone();
    sim.client(CLIENT, async move {
        let manager = Arc::new(client_manager(SimWires::default()));
        let dest = server_dest();
        let mut events = manager.subscribe();
        let streaming = {
            let (manager, dest) = (manager.clone(), dest.clone());
            tokio::spawn(async move {
                stream(&manager, &dest, Duration::from_millis(5), STREAM_UNTIL).await
            })
        };
        let mut requests = Vec::new();
        let mut n = 0;
        while now() < STREAM_UNTIL {
            let (manager, dest) = (manager.clone(), dest.clone());
            n += 1;
            requests.push(tokio::spawn(async move {
                let started = now();
                let outcome = manager
                    .request(&dest, tell(2_000_000 + n), REQUEST_TIMEOUT)
                    .await;
                Ended {
                    started,
                    ended: now(),
                    answered: outcome.is_ok(),
                    disconnected: matches!(
                        outcome,
                        Err(TransportError::Request {
                            source: RequestError::Disconnected { .. },
                            ..
                        })
                    ),
                }
            }));
            tokio::time::sleep(REQUEST_EVERY).await;
        }
        let mut ended = Vec::new();
        for request in requests {
            ended.push(request.await?);
        }
        let stream = streaming.await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dests_before_close = manager.dest_count();
        manager.close_all();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut kinds = Vec::new();
        while let Ok(event) = events.try_recv() {
            kinds.push(match event {
                DestEvent::Connected(_) => "connected",
                DestEvent::Lost(_) => "lost",
                _ => "other",
            });
        }
        *out.lock().unwrap() = Some(Seen {
            events: kinds,
            requests: ended,
            accepted: stream.accepted.len(),
            dests_before_close,
            dests_after_close: manager.dest_count(),
        });
        Ok(())
    });
    let (mut crashed, mut restarted) = (false, false);
    loop {
        let done = sim.step().expect("the simulation steps");
        if !crashed && sim.elapsed() >= CRASH_AT {
            sim.crash(SERVER);
            crashed = true;
        }
        if crashed && !restarted && sim.elapsed() >= RESTART_AT {
            sim.bounce(SERVER);
            restarted = true;
        }
        if done {
            break;
        }
    }
    let seen = seen.lock().unwrap().take().expect("the client finished");
    (seen, log)
}

#[test]
fn callee_host_crash_and_restart_over_many_seeds() {
    for seed in 0..SEEDS {
        let (seen, log) = run(seed);
        // Connected to the first launch, lost at the crash, connected to the second, and
        // lost again only when the test closes it.
        assert_eq!(
            seen.events,
            ["connected", "lost", "connected", "lost"],
            "seed {seed}"
        );
        let mut longest = Duration::ZERO;
        for request in &seen.requests {
            let took = request.ended - request.started;
            longest = longest.max(took);
            assert!(
                took <= REQUEST_TIMEOUT + Duration::from_millis(10),
                "seed {seed}: a request outlived its timeout: {request:?}"
            );
        }
        let answered = seen.requests.iter().filter(|r| r.answered).count();
        let disconnected = seen.requests.iter().filter(|r| r.disconnected).count();
        assert!(
            seen.requests
                .iter()
                .any(|r| r.answered && r.started > RESTART_AT),
            "seed {seed}: no request was answered after the restart"
        );
        let arrivals = log.arrivals();
        assert!(
            gaps(&arrivals).len() <= 1,
            "seed {seed}: {:?}",
            gaps(&arrivals)
        );
        let relaunched = arrivals
            .iter()
            .find(|arrival| arrival.launch == 2)
            .unwrap_or_else(|| panic!("seed {seed}: nothing reached the restarted server"));
        assert!(
            relaunched.at - RESTART_AT <= Duration::from_secs(2),
            "seed {seed}: reconnected {:?} after the restart",
            relaunched.at - RESTART_AT
        );
        assert_eq!(seen.dests_before_close, 1, "seed {seed}");
        assert_eq!(
            seen.dests_after_close, 0,
            "seed {seed}: a destination leaked"
        );
        println!(
            "seed {seed}: {} requests ({answered} answered, {disconnected} disconnected, \
             longest {longest:?}); {} of {} tells arrived; reconnected {:?} after the restart",
            seen.requests.len(),
            arrivals.len(),
            seen.accepted,
            relaunched.at - RESTART_AT
        );
    }
}
