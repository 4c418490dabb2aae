//! Ingress demultiplexing: attached procs get their envelopes directly, everything else
//! goes to the forwarder or bounces.

use std::sync::Arc;
use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{ActorId, DeliveryError, Location, Proc, ProcId};
use plexus_gateway::{Gateway, PostError};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{CountingForwarder, WAIT, elsewhere, ping, spawn_recorder};

/// Envelopes for actors of two procs attached to one gateway reach the right proc's
/// actor, in order, and the forwarder sees none of them.
#[tokio::test]
async fn attached_procs_receive_their_envelopes_without_forwarder_traffic() {
    let forwarder = CountingForwarder::new();
    let gateway = Gateway::with_forwarder(Location::Local(0), forwarder.clone());
    let a = Proc::new(ProcId::unique("a"));
    let b = Proc::new(ProcId::unique("b"));
    let _attached_a = gateway.attach(&a).unwrap();
    let _attached_b = gateway.attach(&b).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let in_a = spawn_recorder(&a, "a", seen_tx.clone());
    let in_b = spawn_recorder(&b, "b", seen_tx);

    for n in 0..10 {
        gateway
            .post_to(&elsewhere(), ping(in_b.clone(), n))
            .unwrap();
    }
    gateway.post(ping(in_a.clone(), 100)).unwrap();

    let mut from_b = Vec::new();
    let mut from_a = Vec::new();
    while from_b.len() < 10 || from_a.is_empty() {
        let (tag, n) = timeout(WAIT, seen.recv()).await.unwrap().unwrap();
        match tag {
            "a" => from_a.push(n),
            _ => from_b.push(n),
        }
    }
    assert_eq!(from_b, (0..10).collect::<Vec<_>>());
    assert_eq!(from_a, vec![100]);
    assert_eq!(forwarder.count(), 0);
}

/// An envelope for an actor of a proc that is not attached goes to the forwarder with its
/// destination (and bounces without one), even when an attached proc has an actor under
/// the same name, and never reaches that actor.
#[tokio::test]
async fn unknown_proc_goes_to_forwarder_and_never_to_an_attached_proc() {
    let forwarder = CountingForwarder::new();
    let gateway = Gateway::with_forwarder(Location::Local(0), forwarder.clone());
    let local = Proc::new(ProcId::new("app", 1));
    let _attached = gateway.attach(&local).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    spawn_recorder(&local, "local", seen_tx);

    // Same label, another instance: a different proc with a same-named actor.
    let stranger = ActorId::new(ProcId::new("app", 2), "recorder", 0);
    assert!(matches!(
        gateway.post(ping(stranger.clone(), 6)),
        Err(PostError::Unroutable { .. })
    ));
    gateway
        .post_to(&elsewhere(), ping(stranger.clone(), 7))
        .unwrap();

    assert_eq!(forwarder.count(), 1);
    let (dest, taken) = forwarder.taken.lock().unwrap()[0].clone();
    assert_eq!(dest, elsewhere());
    assert_eq!(taken.recipient, Recipient::Actor(stranger));
    assert!(
        timeout(Duration::from_millis(200), seen.recv())
            .await
            .is_err(),
        "an attached proc received an envelope for another proc"
    );
}

/// An isolated gateway bounces envelopes for procs it does not hold with `Unroutable`
/// naming the proc, and envelopes that name no proc with `Unaddressed`.
#[tokio::test]
async fn isolated_gateway_bounces_unknown_procs() {
    let gateway = Gateway::isolated(Location::Local(0));
    let proc = Proc::new(ProcId::unique("here"));
    let _attached = gateway.attach(&proc).unwrap();

    let elsewhere = ProcId::new("elsewhere", 3);
    let result = gateway.post_to(
        &crate::support::elsewhere(),
        ping(ActorId::new(elsewhere.clone(), "worker", 0), 1),
    );
    match result {
        Err(PostError::Unroutable { proc }) => assert_eq!(proc, elsewhere),
        other => panic!("expected Unroutable, got {other:?}"),
    }

    let unaddressed = NetworkEnvelope::control(EnvelopeKind::Regular);
    assert!(matches!(
        gateway.post(unaddressed),
        Err(PostError::Unaddressed {
            recipient: Recipient::Transport
        })
    ));
}

/// A refusal by the attached proc comes back as `Delivery` with the proc's reason, and a
/// request posted as if it were a tell is refused without reaching the actor.
#[tokio::test]
async fn delivery_refusals_keep_their_details() {
    let gateway = Gateway::isolated(Location::Local(0));
    let proc = Proc::new(ProcId::unique("here"));
    let _attached = gateway.attach(&proc).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let recorder = spawn_recorder(&proc, "here", seen_tx);

    let missing = ActorId::new(proc.id().clone(), "missing", 0);
    match gateway.post(ping(missing, 1)) {
        Err(PostError::Delivery {
            proc: refused_by,
            source: DeliveryError::NotFound { actor },
        }) => {
            assert_eq!(&refused_by, proc.id());
            assert_eq!(actor, "missing");
        }
        other => panic!("expected Delivery(NotFound), got {other:?}"),
    }

    let mut garbled = ping(recorder.clone(), 1);
    garbled.payload = vec![0xff; 12].into();
    assert!(matches!(
        gateway.post(garbled),
        Err(PostError::Delivery {
            source: DeliveryError::Decode { .. },
            ..
        })
    ));

    let mut request = ping(recorder, 2);
    request.kind = EnvelopeKind::Request { id: 9 };
    assert!(matches!(
        gateway.post(request),
        Err(PostError::NotATell { kind: "request" })
    ));
    assert!(
        timeout(Duration::from_millis(200), seen.recv())
            .await
            .is_err()
    );
}

/// Hands everything to another gateway, counting hops: two of these pointed at each other
/// make a routing loop.
struct Loop {
    next: std::sync::OnceLock<plexus_gateway::WeakGateway>,
    hops: std::sync::atomic::AtomicUsize,
}

impl plexus_gateway::Forwarder for Loop {
    fn forward(&self, dest: &Location, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.hops.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match self.next.get() {
            Some(next) => next.post_to(dest, envelope),
            None => Ok(()),
        }
    }
}

/// A routing loop between two gateways ends after the envelope's hop limit with
/// `TtlExpired`, instead of spinning: every forwarding gateway spends one hop.
#[test]
fn routing_loop_ends_when_the_hop_limit_is_spent() {
    let first = Arc::new(Loop {
        next: Default::default(),
        hops: Default::default(),
    });
    let second = Arc::new(Loop {
        next: Default::default(),
        hops: Default::default(),
    });
    let a = Gateway::with_forwarder("local:1".parse().unwrap(), first.clone());
    let b = Gateway::with_forwarder("local:2".parse().unwrap(), second.clone());
    first.next.set(b.downgrade()).ok().unwrap();
    second.next.set(a.downgrade()).ok().unwrap();

    let stranger = ActorId::new(ProcId::new("stranger", 1), "nobody", 0);
    let envelope = ping(stranger, 7);
    let limit = usize::from(envelope.hop_limit);
    let outcome = a.post_to(&elsewhere(), envelope);
    assert!(
        matches!(outcome, Err(PostError::TtlExpired { .. })),
        "got {outcome:?}"
    );
    let hops = first.hops.load(std::sync::atomic::Ordering::SeqCst)
        + second.hops.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        hops, limit,
        "each forwarding gateway spends exactly one hop"
    );
}
