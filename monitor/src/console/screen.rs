//! The console's screen as plain data: a pure function from the merged snapshot, the one
//! before it and the time now to toned lines of text, so that everything the terminal
//! shows is unit-tested without a terminal.
//!
//! ```text
//! plexus console · 1 source · updated 80ms ago · every 1.0s · q quits
//! actors: 5 alive, 5 spawned, 0 stopped · 1200 messages handled · 98 msgs/s
//! DEADLOCK  app#1/alice.3 → app#1/bob.4 → app#1/alice.3
//! STUCK     app#1/slow.2 handling Crunch for 4.1s
//!
//! ACTOR           STATUS   MAILBOX  MSGS/S  HANDLED  HANDLING     RESTARTS  NOTES
//! app#1/alice.3   running  0/1024   -       2        AfterYou 4s  0         DEADLOCK, waits for ...
//! ```
//!
//! Deadlocks and stuck handlers are listed above the table, so a short terminal that cuts
//! the table still shows them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use plexus_core::{ActorId, ActorStatus};

use crate::graph::Deadlock;
use crate::snapshot::{ActorSnapshot, Snapshot};
use crate::table::{
    align_columns, deadlocked_actors, human_duration, mailbox_cell, short_type_name, status_name,
};

use super::ConsoleOptions;
use super::source::SourceFailure;

/// How a piece of the screen is shown; the terminal maps tones to colors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tone {
    /// Ordinary text.
    Plain,
    /// The title line.
    Title,
    /// The table's column names.
    Header,
    /// An actor in a wait-for cycle, and the cycle itself.
    Deadlock,
    /// A handler running longer than [`ConsoleOptions::stuck_after`].
    Stuck,
    /// An actor stopped for good, shown until its grave window ends.
    Stopped,
    /// A source that failed to answer.
    Failure,
}

/// A run of text in one tone.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Span {
    /// The text, without newlines.
    pub text: String,
    /// How it is shown.
    pub tone: Tone,
}

/// One line of the screen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Line {
    /// Its spans, left to right.
    pub spans: Vec<Span>,
}

impl Line {
    /// A line of one span.
    pub fn new(text: impl Into<String>, tone: Tone) -> Self {
        Line {
            spans: vec![Span {
                text: text.into(),
                tone,
            }],
        }
    }

    /// Its text, without tones.
    pub fn text(&self) -> String {
        self.spans.iter().map(|span| span.text.as_str()).collect()
    }

    /// Whether some span of it has this tone.
    pub fn has_tone(&self, tone: Tone) -> bool {
        self.spans.iter().any(|span| span.tone == tone)
    }

    /// The line cut to `width` characters.
    fn truncated(mut self, width: usize) -> Self {
        let mut room = width;
        for span in &mut self.spans {
            let len = span.text.chars().count();
            if len > room {
                span.text = span.text.chars().take(room).collect();
            }
            room = room.saturating_sub(len);
        }
        self.spans.retain(|span| !span.text.is_empty());
        self
    }
}

/// One actor's row of the table, before layout.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ActorRow {
    /// The actor.
    pub id: ActorId,
    /// Its status, as shown.
    pub status: &'static str,
    /// Mailbox depth over capacity.
    pub mailbox: String,
    /// Messages handled per second since the previous snapshot; `None` without one.
    pub rate: Option<f64>,
    /// Messages handled in total.
    pub handled: u64,
    /// The handler running now (short message type name) and for how long.
    pub handling: Option<(String, Duration)>,
    /// Supervised restarts.
    pub restarts: u32,
    /// Remarks: `DEADLOCK`, or else `STUCK`; what it waits for, panics, why it stopped.
    pub notes: Vec<String>,
    /// How the row is shown: deadlock before stuck before stopped.
    pub tone: Tone,
}

/// What one refresh of the screen shows.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Frame<'a> {
    /// The merged snapshot of this refresh, if any source answered.
    pub current: Option<&'a Snapshot>,
    /// The merged snapshot of the refresh before, for rates.
    pub previous: Option<&'a Snapshot>,
    /// The sources that failed in this refresh.
    pub failures: &'a [SourceFailure],
    /// How many sources the console reads.
    pub sources: usize,
    /// The time now, to say how old the snapshot is.
    pub now: SystemTime,
    /// Thresholds and the refresh interval.
    pub options: &'a ConsoleOptions,
}

impl<'a> Frame<'a> {
    /// A frame of one merged snapshot, with no previous one and no failures.
    pub fn new(current: &'a Snapshot, now: SystemTime, options: &'a ConsoleOptions) -> Self {
        Frame {
            current: Some(current),
            previous: None,
            failures: &[],
            sources: 1,
            now,
            options,
        }
    }

    /// Sets the previous snapshot, for rates.
    pub fn previous(mut self, previous: Option<&'a Snapshot>) -> Self {
        self.previous = previous;
        self
    }

    /// Sets the failed sources and the number of sources.
    pub fn sources(mut self, sources: usize, failures: &'a [SourceFailure]) -> Self {
        self.sources = sources;
        self.failures = failures;
        self
    }
}

const HEADER: [&str; 8] = [
    "ACTOR", "STATUS", "MAILBOX", "MSGS/S", "HANDLED", "HANDLING", "RESTARTS", "NOTES",
];

/// Lays a frame out as lines at most `width` characters wide: title, totals, deadlocks,
/// stuck handlers, failed sources, then the table.
pub fn render_screen(frame: &Frame<'_>, width: usize) -> Vec<Line> {
    let options = frame.options;
    let mut lines = Vec::new();
    let updated = match frame.current {
        // A snapshot stamped ahead of this clock comes from a host whose clock runs ahead.
        Some(current) => frame.now.duration_since(current.taken_at).map_or_else(
            |_| "updated just now".to_owned(),
            |age| format!("updated {} ago", human_duration(age)),
        ),
        None => "not updated yet".to_owned(),
    };
    lines.push(Line::new(
        format!(
            "plexus console · {} source{} · {updated} · every {} · q quits",
            frame.sources,
            if frame.sources == 1 { "" } else { "s" },
            human_duration(options.refresh),
        ),
        Tone::Title,
    ));
    for failure in frame.failures {
        lines.push(Line::new(
            format!("UNREACHABLE  {}", failure.error),
            Tone::Failure,
        ));
    }
    let Some(current) = frame.current else {
        lines.push(Line::new("no source answered yet", Tone::Failure));
        return lines
            .into_iter()
            .map(|line| line.truncated(width))
            .collect();
    };

    let deadlocks = current.deadlocks();
    let rows = actor_rows_with(current, frame.previous, options, &deadlocks);
    // The sum over the rows, not the change in the totals: a source that failed in the
    // previous refresh and answers now would add its whole history to the totals.
    let rate = frame
        .previous
        .map(|_| rows.iter().filter_map(|row| row.rate).sum())
        .map_or_else(|| "-".to_owned(), rate_cell);
    let totals = &current.totals;
    lines.push(Line::new(
        format!(
            "actors: {} alive, {} spawned, {} stopped · {} messages handled · {rate} msgs/s",
            totals.alive, totals.spawned, totals.stopped, totals.messages
        ),
        Tone::Plain,
    ));

    for deadlock in &deadlocks {
        lines.push(Line::new(format!("DEADLOCK  {deadlock}"), Tone::Deadlock));
    }
    for row in rows.iter().filter(|row| row.tone == Tone::Stuck) {
        if let Some((message, elapsed)) = &row.handling {
            lines.push(Line::new(
                format!(
                    "STUCK     {} handling {message} for {}",
                    row.id,
                    human_duration(*elapsed)
                ),
                Tone::Stuck,
            ));
        }
    }
    lines.push(Line::default());
    lines.extend(layout(&rows));
    lines
        .into_iter()
        .map(|line| line.truncated(width))
        .collect()
}

/// Keeps the screen within `height` lines: the first `height - 1` and a line saying how
/// many more there are.
pub fn fit_height(mut lines: Vec<Line>, height: usize) -> Vec<Line> {
    if lines.len() <= height {
        return lines;
    }
    let kept = height.saturating_sub(1);
    let hidden = lines.len() - kept;
    lines.truncate(kept);
    if height > 0 {
        lines.push(Line::new(format!("… {hidden} more lines"), Tone::Plain));
    }
    lines
}

/// The table rows of a snapshot, ordered as the snapshot orders its actors, with rates
/// against `previous` and the marks of deadlocks and stuck handlers.
pub fn actor_rows(
    current: &Snapshot,
    previous: Option<&Snapshot>,
    options: &ConsoleOptions,
) -> Vec<ActorRow> {
    actor_rows_with(current, previous, options, &current.deadlocks())
}

fn actor_rows_with(
    current: &Snapshot,
    previous: Option<&Snapshot>,
    options: &ConsoleOptions,
    deadlocks: &[Deadlock],
) -> Vec<ActorRow> {
    let deadlocked = deadlocked_actors(deadlocks);
    let before: HashMap<&ActorId, &ActorSnapshot> = previous
        .map(|previous| {
            previous
                .actors
                .iter()
                .map(|actor| (&actor.id, actor))
                .collect()
        })
        .unwrap_or_default();
    current
        .actors
        .iter()
        .map(|actor| {
            let rate = previous.and_then(|previous| {
                let earlier = before.get(&actor.id)?;
                rate(earlier.handled, actor.handled, previous, current)
            });
            row(actor, rate, deadlocked.contains(&actor.id), options)
        })
        .collect()
}

fn row(
    actor: &ActorSnapshot,
    rate: Option<f64>,
    deadlocked: bool,
    options: &ConsoleOptions,
) -> ActorRow {
    let handling = actor
        .handling
        .as_ref()
        .map(|handler| (short_type_name(&handler.message_type), handler.elapsed));
    let stuck = handling
        .as_ref()
        .is_some_and(|(_, elapsed)| *elapsed >= options.stuck_after);
    let mut notes = Vec::new();
    if deadlocked {
        notes.push("DEADLOCK".to_owned());
    }
    // A deadlocked actor's handler runs on too; the deadlock already says why.
    let stuck = stuck && !deadlocked;
    if stuck {
        notes.push("STUCK".to_owned());
    }
    for ask in &actor.waiting_for {
        notes.push(format!(
            "waits for {} {}",
            ask.target,
            human_duration(ask.elapsed)
        ));
    }
    match actor.panics {
        0 => {}
        1 => notes.push("1 panic".to_owned()),
        panics => notes.push(format!("{panics} panics")),
    }
    if let Some(reason) = &actor.stop_reason {
        notes.push(reason.to_string());
    }
    let tone = if deadlocked {
        Tone::Deadlock
    } else if stuck {
        Tone::Stuck
    } else if actor.status == ActorStatus::Stopped {
        Tone::Stopped
    } else {
        Tone::Plain
    };
    ActorRow {
        id: actor.id.clone(),
        status: status_name(actor.status),
        mailbox: mailbox_cell(actor),
        rate,
        handled: actor.handled,
        handling,
        restarts: actor.restarts,
        notes,
        tone,
    }
}

/// Counts per second between two snapshots; `None` if time did not advance between them
/// or the count went down (the other side restarted).
fn rate(before: u64, after: u64, previous: &Snapshot, current: &Snapshot) -> Option<f64> {
    let elapsed = current.taken_at.duration_since(previous.taken_at).ok()?;
    if elapsed.is_zero() || after < before {
        return None;
    }
    // Counts stay far below 2^53, so the conversion is exact in practice.
    Some((after - before) as f64 / elapsed.as_secs_f64())
}

/// `-`, `0.5`, `12`, `3400`: one decimal only where it matters.
fn rate_cell(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

/// The table: header and one line per row, columns padded to their widest cell.
fn layout(rows: &[ActorRow]) -> Vec<Line> {
    let cells: Vec<[String; 8]> = std::iter::once(HEADER.map(str::to_owned))
        .chain(rows.iter().map(|row| {
            [
                row.id.to_string(),
                row.status.to_owned(),
                row.mailbox.clone(),
                row.rate.map_or_else(|| "-".to_owned(), rate_cell),
                row.handled.to_string(),
                row.handling.as_ref().map_or_else(
                    || "-".to_owned(),
                    |(message, elapsed)| format!("{message} {}", human_duration(*elapsed)),
                ),
                row.restarts.to_string(),
                row.notes.join(", "),
            ]
        }))
        .collect();
    let tones = std::iter::once(Tone::Header).chain(rows.iter().map(|row| row.tone));
    align_columns(&cells)
        .into_iter()
        .zip(tones)
        .map(|(text, tone)| Line::new(text, tone))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{PendingAsk, RunningHandler, Totals};
    use plexus_core::{Mailbox, ProcId};

    fn id(name: &str) -> ActorId {
        ActorId::new(ProcId::new("app", 1), name, 0)
    }

    fn actor(name: &str, handled: u64) -> ActorSnapshot {
        ActorSnapshot {
            id: id(name),
            actor_type: "app::Thing".to_owned(),
            status: ActorStatus::Running,
            stop_reason: None,
            stopped_for: None,
            spawned_at: SystemTime::UNIX_EPOCH,
            mailbox: Mailbox::default(),
            depth: 0,
            handled,
            message_types: Vec::new(),
            handling: None,
            waiting_for: Vec::new(),
            restarts: 0,
            restarts_in_window: 0,
            panics: 0,
            last_panic: None,
            parent: None,
            children: Vec::new(),
            links: Vec::new(),
            restart: None,
            supervision: None,
        }
    }

    fn snapshot(at_secs: u64, actors: Vec<ActorSnapshot>) -> Snapshot {
        let messages = actors.iter().map(|actor| actor.handled).sum();
        Snapshot {
            taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(at_secs),
            totals: Totals {
                alive: actors.len() as u64,
                spawned: actors.len() as u64,
                stopped: 0,
                messages,
            },
            actors,
        }
    }

    fn handling(mut actor: ActorSnapshot, message: &str, elapsed: Duration) -> ActorSnapshot {
        actor.handling = Some(RunningHandler {
            message_type: message.to_owned(),
            elapsed,
        });
        actor
    }

    fn waiting(mut actor: ActorSnapshot, target: &str) -> ActorSnapshot {
        actor.waiting_for.push(PendingAsk {
            target: id(target),
            elapsed: Duration::from_secs(3),
        });
        actor
    }

    fn line_of<'a>(lines: &'a [Line], needle: &str) -> &'a Line {
        lines
            .iter()
            .find(|line| line.text().contains(needle))
            .unwrap_or_else(|| panic!("no line contains {needle:?}: {lines:#?}"))
    }

    /// Messages per second come from the handled counts of two snapshots and the time
    /// between them; an actor new since the previous snapshot has no rate yet.
    #[test]
    fn rates_come_from_successive_snapshots() {
        let options = ConsoleOptions::default();
        let previous = snapshot(100, vec![actor("busy", 10), actor("idle", 4)]);
        let current = snapshot(
            102,
            vec![actor("busy", 50), actor("idle", 4), actor("new", 900)],
        );
        let rows = actor_rows(&current, Some(&previous), &options);
        let rate_of = |name: &str| rows.iter().find(|row| row.id == id(name)).unwrap().rate;
        assert_eq!(rate_of("busy"), Some(20.0));
        assert_eq!(rate_of("idle"), Some(0.0));
        assert_eq!(rate_of("new"), None);
        assert!(
            actor_rows(&current, None, &options)
                .iter()
                .all(|row| row.rate.is_none())
        );

        let frame = Frame::new(&current, current.taken_at, &options).previous(Some(&previous));
        let lines = render_screen(&frame, 200);
        // The new actor's earlier messages are no part of the rate.
        assert!(line_of(&lines, "actors:").text().contains("· 20 msgs/s"));
        let busy = line_of(&lines, "app#1/busy");
        assert!(busy.text().contains(" 20 "), "{busy:?}");
        let idle = line_of(&lines, "app#1/idle");
        assert!(idle.text().contains(" 0.0 "), "{idle:?}");
    }

    /// Two actors asking each other are marked DEADLOCK in their rows and the cycle is
    /// listed above the table; a bystander is not marked.
    #[test]
    fn deadlocked_actors_are_highlighted() {
        let options = ConsoleOptions::default();
        let current = snapshot(
            5,
            vec![
                waiting(
                    handling(actor("alice", 1), "app::AfterYou", Duration::from_secs(9)),
                    "bob",
                ),
                waiting(
                    handling(actor("bob", 1), "app::AfterYou", Duration::ZERO),
                    "alice",
                ),
                actor("carol", 3),
            ],
        );
        let lines = render_screen(&Frame::new(&current, current.taken_at, &options), 200);
        let cycle = line_of(&lines, "DEADLOCK  ");
        assert_eq!(
            cycle.text(),
            "DEADLOCK  app#1/alice.0 → app#1/bob.0 → app#1/alice.0"
        );
        assert!(cycle.has_tone(Tone::Deadlock));
        for name in ["app#1/alice.0  ", "app#1/bob.0  "] {
            let row = line_of(&lines, name);
            assert!(row.has_tone(Tone::Deadlock), "{row:?}");
            assert!(row.text().contains("DEADLOCK, waits for"), "{row:?}");
        }
        // Alice's handler has run for long, but the deadlock is the news, not a STUCK.
        assert!(lines.iter().all(|line| !line.text().contains("STUCK")));
        let carol = line_of(&lines, "app#1/carol.0");
        assert!(carol.has_tone(Tone::Plain) && !carol.text().contains("DEADLOCK"));
    }

    /// A handler running past the threshold is marked STUCK and listed above the table;
    /// one just under it is not.
    #[test]
    fn stuck_handlers_are_highlighted() {
        let options = ConsoleOptions::default().stuck_after(Duration::from_secs(2));
        let current = snapshot(
            5,
            vec![
                handling(
                    actor("slow", 0),
                    "app::jobs::Crunch",
                    Duration::from_millis(4100),
                ),
                handling(
                    actor("quick", 0),
                    "app::Crunch",
                    Duration::from_millis(1900),
                ),
            ],
        );
        let lines = render_screen(&Frame::new(&current, current.taken_at, &options), 200);
        let summary = line_of(&lines, "STUCK     ");
        assert_eq!(
            summary.text(),
            "STUCK     app#1/slow.0 handling Crunch for 4.1s"
        );
        assert!(summary.has_tone(Tone::Stuck));
        let slow = line_of(&lines, "app#1/slow.0  ");
        assert!(slow.has_tone(Tone::Stuck) && slow.text().contains("Crunch 4.1s"));
        assert!(slow.text().ends_with("STUCK"), "{slow:?}");
        let quick = line_of(&lines, "app#1/quick.0");
        assert!(quick.has_tone(Tone::Plain) && !quick.text().contains("STUCK"));
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.has_tone(Tone::Stuck))
                .count(),
            2
        );
    }

    /// No line is wider than the terminal, and a failed source is shown, not hidden.
    #[test]
    fn lines_fit_the_width_and_failures_show() {
        let options = ConsoleOptions::default();
        let current = snapshot(5, vec![actor("a-rather-long-actor-name", 1)]);
        let failures = [SourceFailure {
            label: "tcp://127.0.0.1:7000".to_owned(),
            error: super::super::SourceError::TimedOut {
                location: "tcp://127.0.0.1:7000".to_owned(),
                after: Duration::from_secs(2),
            },
        }];
        let frame = Frame::new(
            &current,
            current.taken_at + Duration::from_millis(250),
            &options,
        )
        .sources(2, &failures);
        let wide = render_screen(&frame, 500);
        assert!(wide[0].text().contains("2 sources · updated 250ms ago"));
        assert!(line_of(&wide, "UNREACHABLE").has_tone(Tone::Failure));
        let narrow = render_screen(&frame, 20);
        assert_eq!(narrow.len(), wide.len());
        assert!(narrow.iter().all(|line| line.text().chars().count() <= 20));

        let nothing = Frame {
            current: None,
            ..frame
        };
        let lines = render_screen(&nothing, 80);
        assert!(lines[0].text().contains("2 sources · not updated yet"));
        assert_eq!(lines.last().unwrap().text(), "no source answered yet");
        let skewed = Frame::new(
            &current,
            current.taken_at - Duration::from_secs(1),
            &options,
        );
        assert!(
            render_screen(&skewed, 200)[0]
                .text()
                .contains("· updated just now ·")
        );
    }

    /// A screen taller than the terminal keeps its top and says how much is cut.
    #[test]
    fn fit_height_cuts_with_a_count() {
        let lines: Vec<Line> = (0..10)
            .map(|i| Line::new(i.to_string(), Tone::Plain))
            .collect();
        assert_eq!(fit_height(lines.clone(), 10), lines);
        let cut = fit_height(lines, 4);
        let texts: Vec<String> = cut.iter().map(Line::text).collect();
        assert_eq!(texts, ["0", "1", "2", "… 7 more lines"]);
    }
}
