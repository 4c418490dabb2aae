//! Promise 3.1: tells are handled in send order per (sender, recipient) pair.

use std::sync::{Arc, Mutex};

use plexus_core::{Mailbox, Proc, ProcId};

use crate::common::{Count, Record, Recorder, within};

/// Eight concurrent senders each see their own messages handled in the order sent, with
/// none lost, through a small mailbox that makes them wait for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_per_sender_under_concurrent_senders() {
    const SENDERS: usize = 8;
    const PER_SENDER: u64 = 10_000;
    let proc = Proc::new(ProcId::unique("fifo"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = proc
        .spawn_with(
            "recorder",
            Recorder { seen: seen.clone() },
            Mailbox::Bounded(64),
        )
        .unwrap();

    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let recorder = recorder.clone();
        senders.push(tokio::spawn(async move {
            for seq in 0..PER_SENDER {
                recorder.tell(Record(sender, seq)).await.unwrap();
            }
        }));
    }
    for sender in senders {
        within("senders to finish", sender).await.unwrap();
    }
    let total = within("the count", recorder.ask(Count)).await.unwrap();
    assert_eq!(total, SENDERS * PER_SENDER as usize);

    let seen = seen.lock().unwrap();
    let mut next = [0u64; SENDERS];
    for &(sender, seq) in seen.iter() {
        assert_eq!(seq, next[sender], "sender {sender} was reordered");
        next[sender] += 1;
    }
}
