//! The default advertised location unwinds correctly when real servers (listening TCP
//! sockets on 127.0.0.1) stop in any order, and a stopped server no longer accepts.

use std::time::Duration;

use plexus_core::Location;
use plexus_gateway::{Gateway, GatewayConfig, ServeHandle};
use tokio::net::TcpStream;

async fn serve_three(gateway: &Gateway) -> [ServeHandle; 3] {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(
            gateway
                .serve("tcp://127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
        );
        // Each new server becomes the default as it starts.
        assert_eq!(
            &gateway.default_location(),
            servers.last().unwrap().location()
        );
    }
    servers.try_into().ok().unwrap()
}

fn socket_addr(location: &Location) -> String {
    location
        .to_string()
        .strip_prefix("tcp://")
        .expect("a tcp location")
        .to_owned()
}

/// Whether something accepts TCP connections at `location` (bounded wait).
async fn accepts(location: &Location) -> bool {
    let connect = TcpStream::connect(socket_addr(location));
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connect).await,
        Ok(Ok(_))
    )
}

/// Waits until nothing accepts at `location` any more (the listener task ends
/// asynchronously after the handle is dropped).
async fn stops_accepting(location: &Location) {
    for _ in 0..100 {
        if !accepts(location).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{location} still accepts connections after its server stopped");
}

#[tokio::test]
async fn servers_stopped_middle_last_first_unwind_to_the_reserved_location() {
    let reserved = Location::Local(0);
    let gateway = Gateway::new(reserved.clone(), GatewayConfig::default()).unwrap();
    let [first, middle, last] = serve_three(&gateway).await;
    let (first_at, middle_at, last_at) = (
        first.location().clone(),
        middle.location().clone(),
        last.location().clone(),
    );
    assert!(accepts(&middle_at).await);

    middle.stop();
    assert_eq!(gateway.default_location(), last_at);
    stops_accepting(&middle_at).await;
    last.stop();
    assert_eq!(gateway.default_location(), first_at);
    stops_accepting(&last_at).await;
    assert!(accepts(&first_at).await, "the first server still serves");
    first.stop();
    assert_eq!(gateway.default_location(), reserved);
    stops_accepting(&first_at).await;
}

#[tokio::test]
async fn servers_stopped_first_last_middle_unwind_to_the_reserved_location() {
    let reserved = Location::Local(0);
    let gateway = Gateway::new(reserved.clone(), GatewayConfig::default()).unwrap();
    let [first, middle, last] = serve_three(&gateway).await;
    let (middle_at, last_at) = (middle.location().clone(), last.location().clone());

    drop(first);
    assert_eq!(gateway.default_location(), last_at);
    drop(last);
    assert_eq!(gateway.default_location(), middle_at);
    stops_accepting(&last_at).await;
    assert!(accepts(&middle_at).await, "the middle server still serves");
    drop(middle);
    assert_eq!(gateway.default_location(), reserved);
    stops_accepting(&middle_at).await;
}
