//! A supervised tree of actors: tells and asks, a crash, a restart, a graceful stop.
//!
//! Run with `cargo run --release --example quickstart`.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use plexus::{
    Actor, ActorRef, BoxError, ChildSpec, Context, Handler, Proc, ProcId, Restart, StopReason,
    Strategy, Supervision,
};

/// Keeps account balances in memory; a `Corrupt` message makes it panic.
struct Ledger {
    balances: std::collections::HashMap<String, i64>,
}

impl Actor for Ledger {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        println!(
            "  [{}] started (restart #{})",
            ctx.id(),
            ctx.restart_count()
        );
        Ok(())
    }

    async fn on_stop(&mut self, ctx: &mut Context<Self>, reason: &StopReason) {
        println!("  [{}] stopped: {reason}", ctx.id());
    }
}

/// Adds cents to an account (a tell: no reply needed).
struct Deposit {
    account: &'static str,
    cents: i64,
}

impl Handler<Deposit> for Ledger {
    type Reply = ();
    async fn handle(&mut self, deposit: Deposit, _ctx: &mut Context<Self>) {
        *self.balances.entry(deposit.account.to_owned()).or_default() += deposit.cents;
    }
}

/// Asks for an account's balance.
struct Balance(&'static str);

impl Handler<Balance> for Ledger {
    type Reply = i64;
    async fn handle(&mut self, Balance(account): Balance, _ctx: &mut Context<Self>) -> i64 {
        self.balances.get(account).copied().unwrap_or(0)
    }
}

/// A message the ledger cannot cope with.
struct Corrupt;

impl Handler<Corrupt> for Ledger {
    type Reply = ();
    async fn handle(&mut self, _: Corrupt, _ctx: &mut Context<Self>) {
        panic!("ledger invariant broken");
    }
}

/// Counts deposits it hears about, on a timer-driven report.
struct Auditor {
    reports: u32,
}

struct Report;

impl Actor for Auditor {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        println!("  [{}] started", ctx.id());
        ctx.send_interval(Duration::from_millis(100), || Report);
        Ok(())
    }
}

impl Handler<Report> for Auditor {
    type Reply = ();
    async fn handle(&mut self, _: Report, ctx: &mut Context<Self>) {
        self.reports += 1;
        println!("  [{}] audit report #{}", ctx.id(), self.reports);
    }
}

/// Supervises the ledger (permanent) and the auditor (transient), one-for-one.
struct Bank {
    ledger: Option<ActorRef<Ledger>>,
}

impl Actor for Bank {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        println!("  [{}] started, spawning children", ctx.id());
        let ledger = ChildSpec::new("ledger", || Ledger {
            balances: Default::default(),
        });
        self.ledger = Some(ctx.spawn_child(ledger)?);
        let auditor =
            ChildSpec::new("auditor", || Auditor { reports: 0 }).restart(Restart::Transient);
        ctx.spawn_child(auditor)?;
        Ok(())
    }

    async fn on_stop(&mut self, ctx: &mut Context<Self>, reason: &StopReason) {
        println!("  [{}] stopped: {reason}", ctx.id());
    }

    fn supervision(&self) -> Supervision {
        Supervision::new(Strategy::OneForOne).budget(3, Duration::from_secs(10))
    }
}

/// Asks the bank for its ledger.
struct GetLedger;

impl Handler<GetLedger> for Bank {
    type Reply = Option<ActorRef<Ledger>>;
    async fn handle(&mut self, _: GetLedger, _ctx: &mut Context<Self>) -> Self::Reply {
        self.ledger.clone()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Handler panics are caught by plexus; keep the default hook from printing a backtrace.
    std::panic::set_hook(Box::new(|info| println!("  (caught) {info}")));
    let proc = Proc::new(ProcId::new("quickstart", 1));
    println!("proc {} up", proc.id());

    let bank = proc.spawn("bank", Bank { ledger: None })?;
    let ledger = bank.ask(GetLedger).await?.ok_or("the bank has no ledger")?;

    println!("telling 3 deposits");
    ledger
        .tell(Deposit {
            account: "alice",
            cents: 1_000,
        })
        .await?;
    ledger
        .tell(Deposit {
            account: "alice",
            cents: 250,
        })
        .await?;
    ledger
        .tell(Deposit {
            account: "bob",
            cents: 75,
        })
        .await?;
    println!(
        "ask: alice has {} cents",
        ledger.ask(Balance("alice")).await?
    );

    tokio::time::sleep(Duration::from_millis(250)).await;

    println!("sending a message that crashes the ledger");
    ledger.tell(Corrupt).await?;
    // The same ref reaches the restarted ledger; its in-memory state started over.
    println!(
        "ask after restart: alice has {} cents",
        ledger.ask(Balance("alice")).await?
    );
    println!("ledger id unchanged: {}", ledger.id());

    println!("asking with a timeout");
    let bob = ledger
        .ask_timeout(Balance("bob"), Duration::from_millis(500))
        .await?;
    println!("ask: bob has {bob} cents");

    println!("stopping the bank gracefully");
    bank.stop_gracefully();
    let reason = bank.wait_for_stop().await;
    println!(
        "bank stopped: {reason}; ledger alive: {}",
        ledger.is_alive()
    );
    println!("undeliverable messages: {}", proc.undeliverable_count());
    Ok(())
}
