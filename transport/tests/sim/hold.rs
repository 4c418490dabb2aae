//! R5: the link is held for 0.8 s (less than the idle timeout) under load, then
//! released: no disconnect, no loss, order kept; once the flow window is spent a send
//! waits for credit and resumes after the release, and no more than the window was
//! queued at the sender meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{
    CLIENT, SERVER, ServerLog, SimWires, WINDOW, client_manager, gaps, now, serve, server_dest,
    simulation, stream,
};

const HOLD_AT: Duration = Duration::from_secs(2);
const HOLD_FOR: Duration = Duration::from_millis(800);
const STREAM_UNTIL: Duration = Duration::from_secs(4);

#[test]
fn held_link_under_load_loses_nothing() {
    let mut sim = simulation(5, Duration::from_secs(30));
    let log = ServerLog::default();
    let server_log = log.clone();
    sim.host(SERVER, move || serve(server_log.clone()));
    let observed = Arc::new(Mutex::new(None));
    let out = observed.clone();
    sim.client(CLIENT, async move {
        let manager = Arc::new(client_manager(SimWires::default()));
        let dest = server_dest();
        let mut lost = manager.subscribe_lost();
        let streaming = {
            let (manager, dest) = (manager.clone(), dest.clone());
            tokio::spawn(async move {
                stream(&manager, &dest, Duration::from_micros(500), STREAM_UNTIL).await
            })
        };
        tokio::time::sleep(HOLD_AT.saturating_sub(now())).await;
        turmoil::hold(CLIENT, SERVER);
        tokio::time::sleep(HOLD_FOR).await;
        turmoil::release(CLIENT, SERVER);
        let stream = streaming.await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let losses = std::iter::from_fn(|| lost.try_recv().ok()).count();
        *out.lock().unwrap() = Some((stream, losses));
        Ok(())
    });
    sim.run().expect("the simulation runs to its end");
    let (stream, losses) = observed
        .lock()
        .unwrap()
        .take()
        .expect("the client finished");
    let arrivals = log.arrivals();
    println!(
        "{} accepted, {} arrived, {} refused, longest send {:?}",
        stream.accepted.len(),
        arrivals.len(),
        stream.refused,
        stream.longest_send
    );
    println!("server connections closed: {:?}", log.closes());
    assert_eq!(losses, 0, "the held connection was declared dead");
    assert_eq!(stream.refused, 0, "a send failed during the hold");
    assert_eq!(gaps(&arrivals), Vec::new());
    // What the sender had accepted but the server not yet received when the link came
    // back: bounded by the flow window, however long the hold.
    let released = HOLD_AT + HOLD_FOR;
    let sent_by_then = stream
        .accepted_at
        .iter()
        .filter(|at| **at < released)
        .count();
    let arrived_by_then = arrivals.iter().filter(|a| a.at < released).count();
    let queued = sent_by_then - arrived_by_then;
    println!("{queued} tells queued at the sender at the release (window {WINDOW})");
    assert!(
        queued <= WINDOW as usize,
        "{queued} tells queued beyond the window"
    );
    // A send waited for credit through the hold instead of failing.
    assert!(
        stream.longest_send >= HOLD_FOR / 2,
        "no send waited: the longest took {:?}",
        stream.longest_send
    );
    let arrived: Vec<u64> = arrivals.iter().map(|arrival| arrival.seq).collect();
    assert_eq!(arrived, stream.accepted, "not everything accepted arrived");
    assert!(
        arrivals.iter().all(|arrival| arrival.launch == 1),
        "the server restarted"
    );
}
