//! A plain-text table of a snapshot, one row per actor, with deadlocked actors and slow
//! handlers marked: what a terminal shows of a proc.
//!
//! ```text
//! actors: 2 alive, 3 spawned, 1 stopped; 7 messages handled
//! ACTOR              STATUS   MAILBOX  HANDLED  HANDLING    RESTARTS  PANICS  NOTES
//! app#1/left.0       running  0/1024   1        Pass 2.1s   0         0       DEADLOCK, slow
//! ```

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::Duration;

use plexus_core::{ActorId, ActorStatus};

use crate::graph::Deadlock;
use crate::snapshot::{ActorSnapshot, Snapshot};

/// How [`render_table_with`] marks rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableOptions {
    /// A handler running at least this long is marked `slow`; default 1 second.
    pub slow_handler: Duration,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            slow_handler: Duration::from_secs(1),
        }
    }
}

impl TableOptions {
    /// Sets the time after which a running handler is marked `slow`.
    pub fn slow_handler(mut self, slow_handler: Duration) -> Self {
        self.slow_handler = slow_handler;
        self
    }
}

/// Renders a snapshot as a table with the default [`TableOptions`].
///
/// ```
/// use plexus_monitor::{Monitor, render_table};
/// use std::time::Duration;
///
/// let table = render_table(&Monitor::new().snapshot(Duration::ZERO));
/// assert!(table.starts_with("actors: 0 alive, 0 spawned, 0 stopped; 0 messages handled"));
/// ```
pub fn render_table(snapshot: &Snapshot) -> String {
    render_table_with(snapshot, &TableOptions::default())
}

/// Renders a snapshot as a table: a totals line, one row per actor (status, mailbox depth
/// over capacity, messages handled, the running handler and for how long, restarts,
/// panics, and notes: `DEADLOCK`, `slow`, what it waits for, why it stopped), then one
/// line per deadlock.
pub fn render_table_with(snapshot: &Snapshot, options: &TableOptions) -> String {
    let deadlocks = snapshot.deadlocks();
    let deadlocked = deadlocked_actors(&deadlocks);
    let header = [
        "ACTOR", "STATUS", "MAILBOX", "HANDLED", "HANDLING", "RESTARTS", "PANICS", "NOTES",
    ];
    let mut rows: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    for actor in &snapshot.actors {
        rows.push(row(actor, deadlocked.contains(&actor.id), options));
    }

    let totals = &snapshot.totals;
    let mut out = format!(
        "actors: {} alive, {} spawned, {} stopped; {} messages handled\n",
        totals.alive, totals.spawned, totals.stopped, totals.messages
    );
    for line in align_columns(&rows) {
        out.push_str(&line);
        out.push('\n');
    }
    for deadlock in &deadlocks {
        let _ = writeln!(out, "deadlock: {deadlock}");
    }
    out
}

fn row(actor: &ActorSnapshot, deadlocked: bool, options: &TableOptions) -> [String; 8] {
    let mailbox = mailbox_cell(actor);
    let handling = actor.handling.as_ref().map_or_else(
        || "-".to_owned(),
        |handler| {
            format!(
                "{} {}",
                short_type_name(&handler.message_type),
                human_duration(handler.elapsed)
            )
        },
    );
    let mut notes = Vec::new();
    if deadlocked {
        notes.push("DEADLOCK".to_owned());
    }
    if actor
        .handling
        .as_ref()
        .is_some_and(|handler| handler.elapsed >= options.slow_handler)
    {
        notes.push("slow".to_owned());
    }
    for ask in &actor.waiting_for {
        notes.push(format!(
            "waits for {} {}",
            ask.target,
            human_duration(ask.elapsed)
        ));
    }
    if let Some(reason) = &actor.stop_reason {
        notes.push(format!("{reason}"));
    }
    [
        actor.id.to_string(),
        status_name(actor.status).to_owned(),
        mailbox,
        actor.handled.to_string(),
        handling,
        actor.restarts.to_string(),
        actor.panics.to_string(),
        notes.join(", "),
    ]
}

/// Depth over capacity: `3/1024`, `3/unbounded`.
pub(crate) fn mailbox_cell(actor: &ActorSnapshot) -> String {
    match actor.mailbox.capacity() {
        Some(capacity) => format!("{}/{capacity}", actor.depth),
        None => format!("{}/unbounded", actor.depth),
    }
}

/// The actors of every deadlock, to mark their rows.
pub(crate) fn deadlocked_actors(deadlocks: &[Deadlock]) -> BTreeSet<&ActorId> {
    deadlocks
        .iter()
        .flat_map(|deadlock| deadlock.actors.iter())
        .collect()
}

/// One line per row, each column but the last padded to its widest cell plus two spaces,
/// trailing blanks trimmed: the layout of the plain table and of the console screen.
pub(crate) fn align_columns<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                line.push_str(cell);
                if i + 1 < N {
                    line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
                }
            }
            line.truncate(line.trim_end().len());
            line
        })
        .collect()
}

pub(crate) fn status_name(status: ActorStatus) -> &'static str {
    match status {
        ActorStatus::Starting => "starting",
        ActorStatus::Running => "running",
        ActorStatus::Restarting => "restarting",
        ActorStatus::Stopping => "stopping",
        ActorStatus::Stopped => "stopped",
    }
}

/// `1.2s`, `350ms`, `4m05s`: short enough for a column, precise enough to spot a stall.
pub(crate) fn human_duration(elapsed: Duration) -> String {
    let millis = elapsed.as_millis();
    if millis < 1 {
        format!("{}µs", elapsed.as_micros())
    } else if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", elapsed.as_secs_f64())
    } else {
        let secs = elapsed.as_secs();
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// A Rust type name without module paths: `alloc::vec::Vec<app::Job>` → `Vec<Job>`.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment_start = 0;
    let mut rest = full;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("::") {
            out.truncate(segment_start);
            rest = &rest[2..];
            continue;
        }
        out.push(c);
        if !(c.is_alphanumeric() || c == '_') {
            segment_start = out.len();
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Module paths go, generic structure stays.
    #[test]
    fn short_type_names_drop_paths() {
        assert_eq!(short_type_name("app::Ping"), "Ping");
        assert_eq!(
            short_type_name("alloc::vec::Vec<app::jobs::Job>"),
            "Vec<Job>"
        );
        assert_eq!(
            short_type_name("(u64, core::option::Option<&str>)"),
            "(u64, Option<&str>)"
        );
        assert_eq!(short_type_name("u64"), "u64");
    }

    /// Durations read at a glance in every range.
    #[test]
    fn durations_are_short() {
        assert_eq!(human_duration(Duration::from_micros(250)), "250µs");
        assert_eq!(human_duration(Duration::from_millis(350)), "350ms");
        assert_eq!(human_duration(Duration::from_millis(1_300)), "1.3s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
    }
}
