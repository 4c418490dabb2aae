//! The live view: fetch, render, draw, every refresh interval, until a quit key.
//!
//! The terminal is put in raw mode on the alternate screen for the view's lifetime and
//! restored by a guard on every exit path: a quit key, an error, a panic unwinding
//! through the view, or a termination signal (SIGTERM, SIGHUP), which ends the view
//! instead of the process so the guard gets to run.

use std::io::{self, Stdout, Write};
use std::time::SystemTime;

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Color, Print, ResetColor, SetAttribute, SetForegroundColor};
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{execute, queue};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use tokio::time::MissedTickBehavior;

use super::screen::{Frame, Line, Tone, fit_height, render_screen};
use super::source::{Fetched, SnapshotSource, fetch_merged};
use super::{ConsoleError, ConsoleOptions};

/// Shows the merged snapshots of `sources` in the terminal, refreshed every
/// [`ConsoleOptions::refresh`], until `q`, `Esc`, Ctrl-C, or (on unix) SIGTERM or SIGHUP,
/// and gives the terminal back as it was. Needs a terminal on standard input and output
/// and a tokio runtime with time and signals enabled.
///
/// A source that fails is listed on screen and asked again at the next refresh.
///
/// # Cancel safety
/// Dropping the future restores the terminal.
pub async fn run_live(
    sources: &[Box<dyn SnapshotSource>],
    options: &ConsoleOptions,
) -> Result<(), ConsoleError> {
    if sources.is_empty() {
        return Err(ConsoleError::NoSources);
    }
    let mut terminal = TerminalGuard::enter()?;
    let mut events = EventStream::new();
    let mut terminated = Termination::listen()?;
    let mut refresh = tokio::time::interval(options.refresh);
    // A slow fetch delays the next refresh instead of causing a burst of them.
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The fetch runs beside the key reader, so a quit key is obeyed at once even while a
    // source takes its whole timeout to fail.
    let mut in_flight: Option<BoxFuture<'_, Fetched>> = None;
    let mut shown: Option<Fetched> = None;
    let mut previous = None;
    loop {
        let idle = in_flight.is_none();
        let fetch = async {
            match in_flight.as_mut() {
                Some(fetch) => fetch.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = refresh.tick(), if idle => {
                in_flight = Some(
                    fetch_merged(sources, options.grave_window, options.timeout).boxed(),
                );
                continue;
            }
            fetched = fetch => {
                in_flight = None;
                if let Some(last) = shown.take().and_then(|last| last.snapshot) {
                    // Rates compare against the last snapshot that arrived, even across a
                    // refresh in which every source failed.
                    previous = Some(last);
                }
                shown = Some(fetched);
            }
            () = terminated.recv() => break,
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if is_quit(&key) => break,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(ConsoleError::Terminal(error)),
                None => break,
            },
        }
        let Some(fetched) = &shown else { continue };
        let frame = Frame {
            current: fetched.snapshot.as_ref(),
            previous: previous.as_ref(),
            failures: &fetched.failures,
            sources: sources.len(),
            now: SystemTime::now(),
            options,
        };
        terminal.draw(&frame)?;
    }
    Ok(())
}

/// The signals that ask a program to end: SIGTERM (`kill`) and SIGHUP (the terminal
/// closed). Without a handler they would end the process with the terminal still raw.
#[cfg(unix)]
struct Termination {
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Termination {
    fn listen() -> Result<Self, ConsoleError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Termination {
            terminate: signal(SignalKind::terminate()).map_err(ConsoleError::Terminal)?,
            hangup: signal(SignalKind::hangup()).map_err(ConsoleError::Terminal)?,
        })
    }

    /// Waits for either signal.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

/// No termination signals to listen for off unix; closing the console window ends the
/// process there.
#[cfg(not(unix))]
struct Termination;

#[cfg(not(unix))]
impl Termination {
    fn listen() -> Result<Self, ConsoleError> {
        Ok(Termination)
    }

    async fn recv(&mut self) {
        std::future::pending::<()>().await;
    }
}

fn is_quit(key: &KeyEvent) -> bool {
    if key.kind == KeyEventKind::Release {
        return false;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// Raw mode and the alternate screen, undone on drop.
struct TerminalGuard {
    out: Stdout,
}

impl TerminalGuard {
    fn enter() -> Result<Self, ConsoleError> {
        enable_raw_mode().map_err(ConsoleError::Terminal)?;
        // From here on the guard exists, so a failure below still restores raw mode.
        let mut guard = TerminalGuard { out: io::stdout() };
        execute!(guard.out, EnterAlternateScreen, Hide).map_err(ConsoleError::Terminal)?;
        Ok(guard)
    }

    fn draw(&mut self, frame: &Frame<'_>) -> Result<(), ConsoleError> {
        let (width, height) = crossterm::terminal::size().map_err(ConsoleError::Terminal)?;
        let lines = fit_height(
            render_screen(frame, usize::from(width)),
            usize::from(height),
        );
        self.paint(&lines).map_err(ConsoleError::Terminal)
    }

    fn paint(&mut self, lines: &[Line]) -> io::Result<()> {
        let out = &mut self.out;
        for (row, line) in (0u16..).zip(lines) {
            queue!(out, MoveTo(0, row))?;
            for span in &line.spans {
                let (color, bold) = look(span.tone);
                if bold {
                    queue!(out, SetAttribute(Attribute::Bold))?;
                }
                if let Some(color) = color {
                    queue!(out, SetForegroundColor(color))?;
                }
                queue!(
                    out,
                    Print(&span.text),
                    ResetColor,
                    SetAttribute(Attribute::Reset)
                )?;
            }
            queue!(out, Clear(ClearType::UntilNewLine))?;
        }
        let below = u16::try_from(lines.len()).unwrap_or(u16::MAX);
        queue!(out, MoveTo(0, below), Clear(ClearType::FromCursorDown))?;
        out.flush()
    }
}

/// The color and weight of a tone.
fn look(tone: Tone) -> (Option<Color>, bool) {
    match tone {
        Tone::Title | Tone::Header => (None, true),
        Tone::Deadlock | Tone::Failure => (Some(Color::Red), true),
        Tone::Stuck => (Some(Color::Yellow), true),
        Tone::Stopped => (Some(Color::DarkGrey), false),
        _ => (None, false),
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        // Best effort: a terminal that cannot be restored has nobody left to tell.
        let _ = execute!(self.out, ResetColor, Show, LeaveAlternateScreen);
        if let Err(error) = disable_raw_mode() {
            tracing::warn!(%error, "cannot leave raw mode");
        }
    }
}
