//! R11: slowloris and garbage sockets against a serving gateway.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use plexus::{Gateway, GatewayConfig, Location, Proc, ProcId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::{ONE_AT_A_TIME, within};

/// The table's test handshake timeout.
const HANDSHAKE: Duration = Duration::from_secs(2);
/// The table's slack on each cut-off.
const SLACK: Duration = Duration::from_millis(100);
const SLOW_SOCKETS: usize = 1_000;
const GARBAGE_SOCKETS: usize = 100;

/// How one hostile socket ended.
struct Cut {
    slow: bool,
    /// From connected to closed by the server.
    after: Duration,
}

/// Connects, then writes one byte a second (a plausible start of a hello) until the
/// server closes the socket.
async fn slowloris(addr: SocketAddr) -> Cut {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let connected = Instant::now();
    let trickle = [0x30, 0x00, b'P', b'L', b'E', b'X', b'U', b'S'];
    let mut buf = [0u8; 64];
    for byte in trickle.iter().cycle() {
        tokio::select! {
            read = stream.read(&mut buf) => {
                // Closed (end of stream or reset); the server never answers a slowloris.
                if matches!(read, Ok(0) | Err(_)) {
                    break;
                }
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
            }
        }
    }
    Cut {
        slow: true,
        after: connected.elapsed(),
    }
}

/// Connects, writes 64 bytes that are no hello, and waits for the server to close.
async fn garbage(addr: SocketAddr, seed: u64) -> Cut {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let connected = Instant::now();
    // A small xorshift: different bytes per socket, the same on every run.
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let bytes: Vec<u8> = (0..64)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let _ = stream.write_all(&bytes).await;
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Cut {
        slow: false,
        after: connected.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_garbage_are_cut_off_while_a_real_peer_is_served() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut config = GatewayConfig::default();
    config.manager.handshake_timeout = HANDSHAKE;
    let server = Gateway::new(Location::Local(0), config).unwrap();
    let served = server
        .serve("tcp://127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let proc = Proc::new(ProcId::unique("app"));
    let _attachment = server.attach(&proc).unwrap();
    let Location::Tcp(addr) = served.location().clone() else {
        panic!("a tcp server has a tcp location");
    };

    // Opened 100 at a time: 1,100 connects in one burst overflow the listen backlog, and
    // the kernel then completes some handshakes a second late, which would measure the
    // kernel's SYN-ACK retry rather than the gateway.
    let mut hostile = JoinSet::new();
    for batch in 0..(SLOW_SOCKETS + GARBAGE_SOCKETS) / 100 {
        for n in 0..100 {
            let index = batch * 100 + n;
            if index < SLOW_SOCKETS {
                hostile.spawn(slowloris(addr));
            } else {
                hostile.spawn(garbage(addr, index as u64));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A real peer while all of them are open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap();
    let asked = Instant::now();
    let procs = client
        .list_procs(served.location(), Duration::from_secs(5))
        .await
        .unwrap();
    let answered = asked.elapsed();
    assert_eq!(procs, vec![proc.id().clone()]);

    let cuts = within(
        Duration::from_secs(30),
        "every hostile socket closed",
        async {
            let mut cuts = Vec::new();
            while let Some(cut) = hostile.join_next().await {
                cuts.push(cut.unwrap());
            }
            cuts
        },
    )
    .await;
    let longest = |slow: bool| {
        cuts.iter()
            .filter(|cut| cut.slow == slow)
            .map(|cut| cut.after)
            .max()
            .unwrap()
    };
    let shortest_slow = cuts
        .iter()
        .filter(|cut| cut.slow)
        .map(|cut| cut.after)
        .min()
        .unwrap();
    println!(
        "real peer answered in {answered:?} (table: < 100 ms); slowloris cut after \
         {shortest_slow:?}..{:?}, garbage at most {:?} (table: <= {:?})",
        longest(true),
        longest(false),
        HANDSHAKE + SLACK
    );
    assert_eq!(cuts.len(), SLOW_SOCKETS + GARBAGE_SOCKETS);
    assert!(
        longest(true) <= HANDSHAKE + SLACK,
        "a slowloris outlived the bound"
    );
    assert!(
        longest(false) <= HANDSHAKE + SLACK,
        "a garbage socket outlived the bound"
    );
    // Cut by the timeout, not dropped early for some other reason.
    assert!(
        shortest_slow >= HANDSHAKE - SLACK,
        "a slowloris was cut after {shortest_slow:?}"
    );
    // Bounded loosely against a busy machine; the figure is printed above.
    assert!(
        answered < Duration::from_secs(1),
        "the real peer waited {answered:?}"
    );
}
