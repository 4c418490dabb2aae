//! A buyer haggles with two sellers in one conversation, and one seller crashes mid-way.
//!
//! Offers go to the sellers in turn (`Routing::RoundRobin`). The first seller's pricing
//! panics on its second offer; under `CrashPolicy::RouteToNext` the offer it never answered
//! goes to the other seller, and the haggling goes on until a price is accepted.
//!
//! Run with `cargo run -p plexus --example conversation`.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use plexus::{
    Actor, Context, Conversation, CrashPolicy, Handler, Liveness, Proc, ProcId, Routing, Turn,
};

/// A buyer's offer, in euros.
#[derive(Clone, Copy, Debug)]
struct Offer(u32);

/// A seller's answer to an offer.
#[derive(Debug)]
enum Answer {
    Counter { seller: &'static str, price: u32 },
    Accept { seller: &'static str, price: u32 },
}

/// Accepts any offer at or above its floor and otherwise counters a little above the
/// floor; its pricing breaks down on offer number `crashes_on`, if set.
struct Seller {
    name: &'static str,
    floor: u32,
    offers_seen: u32,
    crashes_on: Option<u32>,
}

impl Actor for Seller {}

impl Handler<Turn<Offer, Answer>> for Seller {
    type Reply = ();
    async fn handle(&mut self, turn: Turn<Offer, Answer>, _ctx: &mut Context<Self>) {
        self.offers_seen += 1;
        let Offer(offer) = *turn.request();
        if self.crashes_on == Some(self.offers_seen) {
            panic!(
                "{}'s pricing engine broke down on an offer of {offer}",
                self.name
            );
        }
        let answer = if offer >= self.floor {
            Answer::Accept {
                seller: self.name,
                price: offer,
            }
        } else {
            Answer::Counter {
                seller: self.name,
                price: self.floor + (self.floor - offer) / 4,
            }
        };
        // Refused only if the conversation has ended; then nobody waits for the answer.
        let _ = turn.reply(answer);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The seller's actor catches its panic and the conversation reports it; one line on
    // stderr is enough, instead of the default report with a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("(caught) {info}")));

    let proc = Proc::new(ProcId::unique("market"));
    let ada = proc.spawn(
        "ada",
        Seller {
            name: "ada",
            floor: 420,
            offers_seen: 0,
            crashes_on: Some(2),
        },
    )?;
    let bo = proc.spawn(
        "bo",
        Seller {
            name: "bo",
            floor: 400,
            offers_seen: 0,
            crashes_on: None,
        },
    )?;

    let talk = Conversation::<Offer, Answer>::builder()
        .participant(ada.clone())
        .participant(bo.clone())
        .routing(Routing::RoundRobin)
        .on_crash(CrashPolicy::RouteToNext)
        .deadline(Duration::from_secs(5))
        .start()?;

    // Report the crash as soon as the conversation sees it.
    let ada_exit = talk.notify_exit(ada.id())?;
    let crash_report = tokio::spawn(async move {
        if let Ok(exit) = ada_exit.await {
            println!(
                "conversation: {} stopped ({}); its open offer goes to the next seller",
                exit.participant.name(),
                exit.reason
            );
        }
    });

    let mut offer = 300;
    let deal = loop {
        println!("buyer: offers {offer}");
        talk.send(Offer(offer)).await?;
        match talk.receive_timeout(Duration::from_secs(2)).await? {
            Answer::Counter { seller, price } => {
                println!("{seller}: counters with {price}");
                // Meet halfway, rounding up so the haggling always ends.
                offer = (offer + price).div_ceil(2);
            }
            Answer::Accept { seller, price } => {
                println!("{seller}: accepts {price}");
                break (seller, price);
            }
        }
    };
    talk.complete()?;
    let _ = tokio::time::timeout(Duration::from_secs(1), crash_report).await;

    let state = talk.state();
    println!(
        "deal: {} at {}; conversation {} after {} offers and {} answers",
        deal.0, deal.1, state.phase, state.sent, state.received
    );
    for participant in &state.participants {
        let status = match &participant.liveness {
            Liveness::Alive => "still trading".to_owned(),
            Liveness::Stopped(reason) => format!("stopped ({reason})"),
            Liveness::Crashed(reason) => format!("crashed ({reason})"),
        };
        println!("  {}: {status}", participant.id.name());
    }
    proc.shutdown().await;
    Ok(())
}
