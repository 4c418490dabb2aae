//! Integration tests of plexus-transport, one module per promise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connect_once;
mod connect_once_model;
mod wires;
