//! Integration tests of plexus-core, grouped by the promise they check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod ask;
mod conversation;
mod conversation_remote;
mod dispatch;
mod fifo;
mod links;
mod mailbox;
mod net;
mod observer;
mod proc;
mod remote_ref;
mod remote_supervision;
mod stop;
mod supervision;
mod timers;
mod undeliverable;
