//! The run loop of one actor: incarnations, message handling, signals, supervision
//! decisions and the final stop.
//!
//! ```text
//! spawn ─▶ on_start ─▶ handle messages and signals ─▶ stop children ─▶ on_stop
//!              ▲                                                          │
//!              └──────── Restart ◀── supervisor's decision ◀── (supervised, not last)
//!                                         │ Stop / last / unsupervised
//!                                         ▼
//!                    finalize: close mailbox, report undelivered, notify watchers
//! ```

use std::future::poll_fn;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::actor::{Actor, LinkDied, PanicError, StopReason};
use crate::cell::ErasedCell;
use crate::context::Context;
use crate::envelope::Item;
use crate::error::UndeliverableReason;
use crate::id::ActorId;
use crate::observer::ActorStatus;
use crate::signal::{ChildExit, Decision, Signal};
use crate::supervision::{Factory, Verdict};

tokio::task_local! {
    /// The cell of the actor whose task is running: its id is the sender of the remote
    /// messages the task sends. A cell pointer rather than the id: it rides in every
    /// actor's task, and is two words where an id is six.
    pub(crate) static CURRENT_ACTOR: Arc<dyn ErasedCell>;
}

/// Tells `probe` that no handler runs, if one was last reported running (`open`). Called
/// by the run loop, and from inside its wait for the next event where `self` is split.
fn close_handler(probe: &Option<Arc<dyn crate::observer::ActorProbe>>, open: &mut bool) {
    if std::mem::take(open) {
        if let Some(probe) = probe {
            probe.handler_finished();
        }
    }
}

/// The actor whose task is running, if any.
pub(crate) fn current_actor() -> Option<ActorId> {
    CURRENT_ACTOR.try_with(|cell| cell.core().id.clone()).ok()
}

/// Everything the actor's task owns besides the actor value.
/// How many messages an actor handles in a row, its mailbox never empty, before it lets
/// the other tasks of its worker thread run.
///
/// Taking a message spends none of tokio's cooperative budget (128 operations per poll),
/// which would make a busy actor yield every 128 messages: each yield let an idle worker
/// thread steal the actor and move it, with its cache, to another core, which cost more
/// than handling the messages. A handler's own waits on tokio resources still spend the
/// budget as usual, so only handlers that never wait run on this count alone.
const MAILBOX_STREAK: u32 = 1024;

pub(crate) struct Runner<A: Actor> {
    pub(crate) factory: Factory<A>,
    pub(crate) rx: mpsc::UnboundedReceiver<Item<A>>,
    pub(crate) ctx: Context<A>,
    pub(crate) parent: Option<Arc<dyn ErasedCell>>,
}

/// How an incarnation ended.
struct Exit {
    reason: StopReason,
    /// Stopped for good on request: no supervisor decision is needed.
    last: bool,
}

enum Event<A: Actor> {
    Item(Item<A>),
    Signal(Signal),
}

impl<A: Actor> Runner<A> {
    pub(crate) async fn run(mut self: Box<Self>, first: A) {
        let mut actor = first;
        let reason = loop {
            let exit = self.incarnation(&mut actor).await;
            if exit.last || self.parent.is_none() {
                break exit.reason;
            }
            self.status(ActorStatus::Restarting);
            if Box::pin(self.await_decision(&exit.reason)).await == Decision::Stop {
                break exit.reason;
            }
            let Some(factory) = self.factory.as_mut() else {
                break exit.reason;
            };
            match std::panic::catch_unwind(AssertUnwindSafe(factory)) {
                Ok(next) => actor = next,
                Err(payload) => {
                    break StopReason::StartFailed(PanicError::from_payload(payload).message);
                }
            }
            self.ctx.restarts += 1;
            if let Some(probe) = &self.ctx.probe {
                probe.restarted();
            }
            tracing::info!(actor = %self.ctx.id(), restarts = self.ctx.restarts, "actor restarted");
        };
        self.finalize(reason);
    }

    /// One incarnation: start, handle messages until something stops it, stop. The hooks'
    /// futures are boxed (user-sized, they would grow every actor's task; the default hooks
    /// are empty and box without allocating), and so is waiting for children.
    async fn incarnation(&mut self, actor: &mut A) -> Exit {
        let exit = match self.start(actor).await {
            Ok(()) => self.handle_until_stop(actor).await,
            Err(exit) => exit,
        };
        // Boxed: it runs once per incarnation, and inline its state (a stop reason and
        // the hooks' futures) would sit in every idle actor's task.
        Box::pin(self.end(actor, exit)).await
    }

    async fn start(&mut self, actor: &mut A) -> Result<(), Exit> {
        self.ctx.stop = None;
        self.ctx.supervision = actor.supervision();
        if let Some(probe) = &self.ctx.probe {
            probe.supervision(&self.ctx.supervision);
        }
        self.status(ActorStatus::Starting);
        let started = AssertUnwindSafe(Box::pin(actor.on_start(&mut self.ctx)))
            .catch_unwind()
            .await;
        match started {
            Ok(Ok(())) => match self.ctx.stop.take().map(|reason| *reason) {
                Some(reason) => Err(Exit {
                    reason,
                    last: false,
                }),
                None => {
                    self.status(ActorStatus::Running);
                    Ok(())
                }
            },
            Ok(Err(error)) => Err(Exit {
                reason: StopReason::StartFailed(error.to_string()),
                last: false,
            }),
            Err(payload) => Err(Exit {
                reason: StopReason::StartFailed(PanicError::from_payload(payload).message),
                last: false,
            }),
        }
    }

    async fn end(&mut self, actor: &mut A, exit: Exit) -> Exit {
        self.status(ActorStatus::Stopping);
        self.ctx.abort_tasks();
        if let Some(relations) = self.ctx.relations.as_mut() {
            Box::pin(relations.supervisor.shut_down_children()).await;
        }
        let on_stop = AssertUnwindSafe(Box::pin(actor.on_stop(&mut self.ctx, &exit.reason)));
        if let Err(payload) = on_stop.catch_unwind().await {
            let panic = PanicError::from_payload(payload);
            tracing::warn!(actor = %self.ctx.id(), error = %panic, "on_stop panicked");
        }
        if exit.reason.is_abnormal() {
            tracing::warn!(actor = %self.ctx.id(), reason = %exit.reason, "actor stopped abnormally");
        }
        exit
    }

    /// The hot loop: one message or signal at a time until something stops the actor.
    ///
    /// A probe hears `handler_finished` only when the actor goes idle or turns to
    /// something other than a message, not after every handler: under load the next
    /// `handler_started` follows within nanoseconds and overwrites the running handler
    /// anyway, and the call saved is a fair share of what a monitor costs per message.
    async fn handle_until_stop(&mut self, actor: &mut A) -> Exit {
        // One loop broken with the exit, not a nested async fn: every actor's task holds
        // this future, and a second state machine around it made each idle actor larger.
        // Messages taken in a row without the mailbox running dry; see `MAILBOX_STREAK`.
        let mut streak = 0u32;
        let exit = loop {
            // Yielded here, where nothing but the loop's own state is held, so the wait
            // adds nothing to an idle actor's size.
            if streak >= MAILBOX_STREAK {
                streak = 0;
                tokio::task::yield_now().await;
            }
            let event = self.next_event(&mut streak).await;
            if !matches!(event, Event::Item(Item::Message(_))) {
                self.close_handler();
            }
            match event {
                Event::Item(Item::Message(mut envelope)) => {
                    // `handle` reports the start to the probe (see `envelope::report_start`).
                    self.ctx.handler_open = true;
                    let outcome = envelope.handle(actor, &mut self.ctx).await;
                    if let Err(panic) = outcome {
                        self.close_handler();
                        if let ControlFlow::Break(reason) = self.on_panic(actor, panic) {
                            break Exit {
                                reason,
                                last: false,
                            };
                        }
                    }
                }
                Event::Item(Item::LinkDied(died)) => {
                    if let ControlFlow::Break(reason) =
                        Box::pin(self.on_link_died(actor, *died)).await
                    {
                        break Exit {
                            reason,
                            last: false,
                        };
                    }
                }
                Event::Item(Item::Drained) => {
                    break Exit {
                        reason: StopReason::Stopped,
                        last: true,
                    };
                }
                Event::Signal(signal) => {
                    if let ControlFlow::Break(exit) = self.on_signal(signal) {
                        break exit;
                    }
                }
            }
            if let Some(reason) = self.ctx.stop.take().map(|reason| *reason) {
                break Exit {
                    reason,
                    last: false,
                };
            }
        };
        self.close_handler();
        exit
    }

    fn close_handler(&mut self) {
        close_handler(&self.ctx.probe, &mut self.ctx.handler_open);
    }

    /// The next signal or mailbox item, signals first. Taking from the mailbox spends none
    /// of tokio's cooperative budget: `handle_until_stop` yields on its own after
    /// [`MAILBOX_STREAK`] messages in a row, counted in `streak`.
    async fn next_event(&mut self, streak: &mut u32) -> Event<A> {
        let signals = &self.ctx.cell.core.signals;
        let admission = &self.ctx.cell.core.admission;
        let rx = &mut self.rx;
        let probe = &self.ctx.probe;
        let handler_open = &mut self.ctx.handler_open;
        tokio::task::unconstrained(poll_fn(|cx| {
            if let Some(signal) = signals.take() {
                return Poll::Ready(Event::Signal(signal));
            }
            match rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    *streak += 1;
                    admission.release();
                    Poll::Ready(Event::Item(item))
                }
                // The cell holds a sender for as long as this task runs, so the channel
                // cannot end; waiting for a signal is the only way on.
                Poll::Ready(None) | Poll::Pending => {
                    if signals.poll_pending(cx) {
                        if let Some(signal) = signals.take() {
                            return Poll::Ready(Event::Signal(signal));
                        }
                    }
                    // Idle from here: the last handler has ended (see `handle_until_stop`).
                    *streak = 0;
                    close_handler(probe, handler_open);
                    Poll::Pending
                }
            }
        }))
        .await
    }

    fn on_panic(&mut self, actor: &mut A, panic: PanicError) -> ControlFlow<StopReason> {
        tracing::warn!(actor = %self.ctx.id(), error = %panic, "handler panicked");
        if let Some(probe) = &self.ctx.probe {
            probe.panicked(&panic.message);
        }
        let message = panic.message.clone();
        match std::panic::catch_unwind(AssertUnwindSafe(|| actor.on_panic(&mut self.ctx, panic))) {
            Ok(flow) => flow,
            Err(_) => ControlFlow::Break(StopReason::Panicked(message)),
        }
    }

    async fn on_link_died(&mut self, actor: &mut A, died: LinkDied) -> ControlFlow<StopReason> {
        let hook = AssertUnwindSafe(Box::pin(actor.on_link_died(&mut self.ctx, died)));
        match hook.catch_unwind().await {
            Ok(flow) => flow,
            Err(payload) => ControlFlow::Break(StopReason::Panicked(
                PanicError::from_payload(payload).message,
            )),
        }
    }

    fn on_signal(&mut self, signal: Signal) -> ControlFlow<Exit> {
        match signal {
            Signal::Stop(request) => {
                return ControlFlow::Break(Exit {
                    reason: request.reason(),
                    last: true,
                });
            }
            Signal::Restart => {
                return ControlFlow::Break(Exit {
                    reason: StopReason::Restarting,
                    last: false,
                });
            }
            Signal::Watch { watcher, kind } => self.ctx.add_watcher(watcher, kind),
            Signal::ChildExited(exit) => {
                let ChildExit {
                    child,
                    reason,
                    last,
                } = *exit;
                let policy = self.ctx.supervision;
                let Some(relations) = self.ctx.relations.as_mut() else {
                    return ControlFlow::Continue(());
                };
                if let Verdict::Escalate(reason) = relations
                    .supervisor
                    .child_exited(&policy, &child, reason, last)
                {
                    return ControlFlow::Break(Exit {
                        reason,
                        last: false,
                    });
                }
            }
            // A decision meant for an earlier incarnation; nothing waits for it now.
            Signal::Decision(_) => {}
        }
        ControlFlow::Continue(())
    }

    /// Reports the end of an incarnation to the supervisor and waits for its decision,
    /// mailbox intact.
    async fn await_decision(&mut self, reason: &StopReason) -> Decision {
        let Some(parent) = &self.parent else {
            return Decision::Stop;
        };
        let report = Signal::ChildExited(Box::new(ChildExit {
            child: self.ctx.id().clone(),
            reason: reason.clone(),
            last: false,
        }));
        if parent.core().signal(report).is_err() {
            return Decision::Stop;
        }
        let cell = self.ctx.cell.clone();
        let signals = &cell.core.signals;
        loop {
            let signal = poll_fn(|cx| match signals.take() {
                Some(signal) => Poll::Ready(signal),
                None if signals.poll_pending(cx) => match signals.take() {
                    Some(signal) => Poll::Ready(signal),
                    None => Poll::Pending,
                },
                None => Poll::Pending,
            })
            .await;
            match signal {
                Signal::Decision(decision) => return decision,
                Signal::Stop(_) => return Decision::Stop,
                Signal::Watch { watcher, kind } => self.ctx.add_watcher(watcher, kind),
                // Already between incarnations, and its children are already stopped.
                Signal::Restart | Signal::ChildExited(_) => {}
            }
        }
    }

    /// The final stop: after this, nothing reaches the actor and everyone who asked to know
    /// has been told, exactly once.
    fn finalize(&mut self, reason: StopReason) {
        let core = &self.ctx.cell.core;
        // The reason goes first: a watch refused by the closed queue below reads it.
        core.exit.set_reason(reason.clone());
        for signal in core.signals.close() {
            if let Signal::Watch { watcher, kind } = signal {
                self.ctx
                    .relations
                    .get_or_insert_with(Box::default)
                    .watchers
                    .push((watcher, kind));
            }
        }
        core.admission.close();
        self.rx.close();
        let mut undelivered = 0usize;
        while let Ok(item) = self.rx.try_recv() {
            core.admission.release();
            if let Item::Message(envelope) = item {
                undelivered += 1;
                let why = UndeliverableReason::StoppedBeforeHandling(reason.clone());
                crate::proc::report_undeliverable(core, envelope, why);
            }
        }
        if undelivered > 0 {
            tracing::debug!(actor = %core.id, undelivered, "queued messages not handled before stop");
        }
        let watchers = self
            .ctx
            .relations
            .as_mut()
            .map(|relations| std::mem::take(&mut relations.watchers));
        for (watcher, kind) in watchers.unwrap_or_default() {
            let died = LinkDied {
                id: core.id.clone(),
                reason: reason.clone(),
                kind,
            };
            watcher.deliver_link_died(died);
        }
        if let Some(parent) = &self.parent {
            let report = Signal::ChildExited(Box::new(ChildExit {
                child: core.id.clone(),
                reason: reason.clone(),
                last: true,
            }));
            let _ = parent.core().signal(report);
        }
        self.ctx.proc.unregister(&core.id, &self.ctx.cell);
        if let Some(probe) = &self.ctx.probe {
            probe.stopped(&reason);
            probe.status(ActorStatus::Stopped);
        }
        core.exit.finish();
    }

    fn status(&self, status: ActorStatus) {
        if let Some(probe) = &self.ctx.probe {
            probe.status(status);
        }
    }
}

impl<A: Actor> Drop for Runner<A> {
    /// The task was dropped before the actor stopped for good (its runtime shut down):
    /// still close the mailbox, answer pending asks, report queued tells and notify
    /// watchers, so nobody waits forever on an actor that no longer runs.
    fn drop(&mut self) {
        if !self.ctx.cell.core.exit.is_finished() {
            self.finalize(StopReason::Shutdown);
        }
    }
}
