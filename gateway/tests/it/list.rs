//! Listing the procs attached at a location over TCP: live procs only, sorted, and typed
//! errors when the location cannot be asked.

use std::time::Duration;

use plexus_core::{Location, Proc, ProcId};
use plexus_gateway::{Gateway, GatewayConfig, RemoteRequestError};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_location_lists_its_live_procs() {
    let server = Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap();
    let served = server
        .serve("tcp://127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let first = Proc::new(ProcId::new("first", 1));
    let second = Proc::new(ProcId::new("second", 2));
    let _first = server.attach(&first).unwrap();
    let second_attachment = server.attach(&second).unwrap();

    let client = Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap();
    let listed = client.list_procs(served.location(), WAIT).await.unwrap();
    assert_eq!(listed, vec![first.id().clone(), second.id().clone()]);

    // A detached proc is no longer listed; the server answers for its own location too.
    drop(second_attachment);
    let listed = client.list_procs(served.location(), WAIT).await.unwrap();
    assert_eq!(listed, vec![first.id().clone()]);
    assert_eq!(
        server.list_procs(served.location(), WAIT).await.unwrap(),
        vec![first.id().clone()]
    );
    assert_eq!(server.attached_procs(), vec![first.id().clone()]);
}

#[tokio::test]
async fn an_unreachable_or_isolated_location_is_a_typed_error() {
    // A port nothing listens on (bound, then released).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let nowhere: Location = format!("tcp://127.0.0.1:{port}").parse().unwrap();

    let client = Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap();
    let error = client.list_procs(&nowhere, WAIT).await.unwrap_err();
    assert!(
        matches!(error, RemoteRequestError::Unreachable { .. }),
        "{error:?}"
    );

    let isolated = Gateway::isolated(Location::Local(0));
    let error = isolated.list_procs(&nowhere, WAIT).await.unwrap_err();
    assert!(
        matches!(error, RemoteRequestError::Unreachable { .. }),
        "{error:?}"
    );
}
