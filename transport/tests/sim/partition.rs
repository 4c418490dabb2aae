//! R4: a silent partition of 5 s during a steady stream. The connection is declared dead
//! between the idle timeout and the idle timeout plus one ping interval after the last
//! byte read, in-flight requests fail `Disconnected` then, the loss is published once,
//! and after the repair the stream resumes within 1 s with no reordering and no
//! duplicate (one gap allowed: what was queued on the dead connection).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_transport::{RequestError, TransportError};

use crate::{
    Arrival, CLIENT, IDLE, PING, SERVER, ServerLog, SimWires, client_manager, gaps, now, serve,
    server_dest, simulation, stream, tell,
};

/// When the partition starts and ends, in simulated time.
const PARTITION_AT: Duration = Duration::from_secs(2);
const REPAIR_AT: Duration = Duration::from_secs(7);
/// When the stream stops.
const STREAM_UNTIL: Duration = Duration::from_secs(10);
/// Requests sent into the partition, each with the table's 30 s ask timeout.
const REQUESTS: u64 = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything one run observed, comparable between runs of one seed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) arrivals: Vec<Arrival>,
    /// When the client's last byte before the loss was read.
    pub(crate) last_byte: Duration,
    /// When the loss was published.
    pub(crate) lost_at: Duration,
    /// How many losses were published in the whole run.
    pub(crate) losses: usize,
    /// When each request into the partition ended, and whether it was `Disconnected`.
    pub(crate) requests: Vec<(Duration, bool)>,
    /// The numbers the manager accepted.
    pub(crate) accepted: Vec<u64>,
}

/// Runs the scenario under `seed` and returns what it observed.
pub(crate) fn run(seed: u64) -> Observed {
    let mut sim = simulation(seed, Duration::from_secs(30));
    let log = ServerLog::default();
    let server_log = log.clone();
    sim.host(SERVER, move || serve(server_log.clone()));
    let observed = Arc::new(Mutex::new(None));
    let out = observed.clone();
    sim.client(CLIENT, async move {
        let wires = SimWires::default();
        let last_byte = wires.last_byte.clone();
        let manager = Arc::new(client_manager(wires));
        let dest = server_dest();
        let mut lost = manager.subscribe_lost();

        let streaming = {
            let (manager, dest) = (manager.clone(), dest.clone());
            tokio::spawn(async move {
                stream(&manager, &dest, Duration::from_millis(5), STREAM_UNTIL).await
            })
        };

        tokio::time::sleep(PARTITION_AT.saturating_sub(now())).await;
        turmoil::partition(CLIENT, SERVER);
        // Sent after the partition began: each is in flight until the loss.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let requests: Vec<_> = (0..REQUESTS)
            .map(|n| {
                let (manager, dest) = (manager.clone(), dest.clone());
                tokio::spawn(async move {
                    let outcome = manager
                        .request(&dest, tell(1_000_000 + n), REQUEST_TIMEOUT)
                        .await;
                    let disconnected = matches!(
                        outcome,
                        Err(TransportError::Request {
                            source: RequestError::Disconnected { .. },
                            ..
                        })
                    );
                    (now(), disconnected)
                })
            })
            .collect();

        lost.recv().await?;
        let lost_at = now();
        let last_byte = last_byte
            .get()
            .expect("bytes were read before the partition");

        tokio::time::sleep(REPAIR_AT.saturating_sub(now())).await;
        turmoil::repair(CLIENT, SERVER);

        let mut ended = Vec::new();
        for request in requests {
            ended.push(request.await?);
        }
        let stream = streaming.await?;
        // Whatever is still queued reaches the server within a few ticks.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut losses = 1;
        while lost.try_recv().is_ok() {
            losses += 1;
        }
        *out.lock().unwrap() = Some(Observed {
            arrivals: Vec::new(),
            last_byte,
            lost_at,
            losses,
            requests: ended,
            accepted: stream.accepted,
        });
        Ok(())
    });
    sim.run().expect("the simulation runs to its end");
    let mut observed = observed
        .lock()
        .unwrap()
        .take()
        .expect("the client finished");
    observed.arrivals = log.arrivals();
    observed
}

#[test]
fn silent_partition_during_a_stream() {
    let observed = run(4);
    let Observed {
        arrivals,
        last_byte,
        lost_at,
        losses,
        requests,
        accepted,
    } = &observed;

    let silence = *lost_at - *last_byte;
    println!("declared dead {silence:?} after the last byte (idle {IDLE:?}, ping {PING:?})");
    assert!(
        *lost_at > PARTITION_AT && silence >= IDLE && silence <= IDLE + PING,
        "declared dead {silence:?} after the last byte at {last_byte:?}"
    );
    assert_eq!(*losses, 1, "the loss is published once");

    assert_eq!(requests.len() as u64, REQUESTS);
    for (ended, disconnected) in requests {
        assert!(
            *disconnected,
            "a request into the partition ended otherwise"
        );
        assert!(
            *ended >= *lost_at && *ended <= *lost_at + Duration::from_millis(10),
            "a request ended at {ended:?}, the loss was at {lost_at:?}"
        );
    }

    let gaps = gaps(arrivals);
    assert!(gaps.len() <= 1, "more than one gap: {gaps:?}");
    let resumed = arrivals
        .iter()
        .find(|arrival| arrival.at > REPAIR_AT)
        .expect("the stream resumed after the repair");
    println!(
        "resumed {:?} after the repair; {} of {} accepted tells arrived; gaps {gaps:?}",
        resumed.at - REPAIR_AT,
        arrivals.len(),
        accepted.len()
    );
    assert!(resumed.at - REPAIR_AT <= Duration::from_secs(1));
    // Everything accepted after the reconnect arrived: the suffix is whole.
    let first_after = accepted
        .iter()
        .position(|&seq| seq == resumed.seq)
        .expect("an arrival was accepted");
    let suffix: Vec<u64> = arrivals
        .iter()
        .filter(|arrival| arrival.at > REPAIR_AT)
        .map(|arrival| arrival.seq)
        .collect();
    assert_eq!(suffix, accepted[first_after..]);
    // And the prefix is everything accepted before the partition.
    let before: Vec<u64> = arrivals
        .iter()
        .filter(|arrival| arrival.at <= PARTITION_AT)
        .map(|arrival| arrival.seq)
        .collect();
    assert_eq!(before, accepted[..before.len()]);
}
