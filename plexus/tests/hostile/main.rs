//! Hostile peers over real loopback TCP, the reliability scenarios R10 and R11:
//!
//! - R10: an oversized length prefix after the handshake closes that connection with
//!   `FrameTooLarge { len, max }` at once, without reserving the declared length (the
//!   heap is measured by this binary's counting allocator), and another connection of
//!   the same process goes on delivering.
//! - R11: 1,000 slowloris sockets (1 byte per second) and 100 sockets of garbage against
//!   a serving gateway: each is closed by the handshake timeout plus 100 ms at most, and
//!   a legitimate gateway is answered meanwhile.
//!
//! Every wait is bounded; the figures are printed next to the table's pass marks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    unsafe_code,
    reason = "a test binary: a counting global allocator needs `unsafe impl GlobalAlloc`, and \
              the measured figures are printed"
)]

mod alloc;
mod frame;
mod slowloris;

use std::future::Future;
use std::time::Duration;

/// Held by each test for its whole run: the heap bound of R10 is measured on the whole
/// process, so the other test's 1,100 sockets must not allocate meanwhile.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Awaits `future` for at most `limit`, failing the test with `what` if it does not finish.
async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen within {limit:?}"),
    }
}
