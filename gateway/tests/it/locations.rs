//! The default advertised location unwinds correctly whatever the order in which served
//! locations stop.

use plexus_core::Location;
use plexus_gateway::{Gateway, ServeGuard};

fn serve_three(gateway: &Gateway) -> [ServeGuard; 3] {
    let guards = [1, 2, 3].map(|n| gateway.serve_location(Location::Local(n)));
    assert_eq!(gateway.default_location(), Location::Local(3));
    guards
}

/// Stopping the middle, then the last, then the first server leaves the last one still
/// served as the default each time, then the reserved location.
#[test]
fn stops_middle_last_first() {
    let gateway = Gateway::isolated(Location::Local(0));
    assert_eq!(gateway.default_location(), Location::Local(0));
    let [first, middle, last] = serve_three(&gateway);

    middle.stop();
    assert_eq!(gateway.default_location(), Location::Local(3));
    last.stop();
    assert_eq!(gateway.default_location(), Location::Local(1));
    assert_eq!(first.location(), &Location::Local(1));
    first.stop();
    assert_eq!(gateway.default_location(), Location::Local(0));
}

/// Stopping the first, then the last, then the middle server falls back to the middle
/// one, then to the reserved location.
#[test]
fn stops_first_last_middle() {
    let gateway = Gateway::isolated(Location::Local(0));
    let [first, middle, last] = serve_three(&gateway);

    drop(first);
    assert_eq!(gateway.default_location(), Location::Local(3));
    drop(last);
    assert_eq!(gateway.default_location(), Location::Local(2));
    drop(middle);
    assert_eq!(gateway.default_location(), Location::Local(0));
}

/// A guard that outlives its gateway drops quietly.
#[test]
fn guard_outliving_gateway_drops_quietly() {
    let gateway = Gateway::isolated(Location::Local(0));
    let guard = gateway.serve_location(Location::Local(1));
    drop(gateway);
    assert_eq!(guard.location(), &Location::Local(1));
    drop(guard);
}

/// The same location served twice is two entries: stopping the earlier one keeps the
/// later one (and so the location) advertised above a different location served between.
#[test]
fn same_location_served_twice_unwinds_by_guard() {
    let gateway = Gateway::isolated(Location::Local(0));
    let early = gateway.serve_location(Location::Local(1));
    let between = gateway.serve_location(Location::Local(2));
    let late = gateway.serve_location(Location::Local(1));

    early.stop();
    assert_eq!(gateway.default_location(), Location::Local(1));
    late.stop();
    assert_eq!(gateway.default_location(), Location::Local(2));
    between.stop();
    assert_eq!(gateway.default_location(), Location::Local(0));
}
