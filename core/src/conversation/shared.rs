//! The async side of a conversation: the lock around its state machine, the wake-ups of
//! receives, the delivery of turns, and the tasks that watch participants, enforce the
//! deadline and run a compensation.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::actor::{PanicError, StopReason};

use super::error::ConversationError;
use super::inner::{AfterExit, Delivery, Inner};
use super::participant::{ConversationReply, Participant, ReplySink, Turn, TurnId};
use super::policy::{Compensation, CrashReport, Routing};

/// Everything the handles, the turns and the tasks of one conversation share.
pub(crate) struct Shared<Req, Resp> {
    pub(crate) id: u64,
    inner: Mutex<Inner<Req, Resp>>,
    /// Woken once per reply, and for everyone when the conversation ends. A receive checks
    /// the buffer only after registering here, so a reply between the two is not missed.
    pub(crate) replies: Notify,
    participants: Vec<Arc<dyn Participant<Req, Resp>>>,
    routing: Routing<Req>,
    /// The watchers and the deadline timer; `None` once the conversation has ended.
    tasks: Mutex<Option<Vec<AbortHandle>>>,
    runtime: Handle,
}

impl<Req, Resp> Shared<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    pub(crate) fn new(
        id: u64,
        inner: Inner<Req, Resp>,
        participants: Vec<Arc<dyn Participant<Req, Resp>>>,
        routing: Routing<Req>,
        runtime: Handle,
    ) -> Self {
        Shared {
            id,
            inner: Mutex::new(inner),
            replies: Notify::new(),
            participants,
            routing,
            tasks: Mutex::new(Some(Vec::new())),
            runtime,
        }
    }

    pub(crate) fn routing(&self) -> &Routing<Req> {
        &self.routing
    }

    /// Runs `change` under the lock; if it ended the conversation, stops its tasks and
    /// wakes every receive so each sees the end.
    pub(crate) fn update<T>(&self, change: impl FnOnce(&mut Inner<Req, Resp>) -> T) -> T {
        let (out, ended) = {
            let mut inner = self.lock();
            let was_final = inner.phase().is_final();
            let out = change(&mut inner);
            (out, !was_final && inner.phase().is_final())
        };
        if ended {
            self.stop_tasks();
            self.replies.notify_waiters();
        }
        out
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner<Req, Resp>> {
        // The state machine changes its fields in single steps and runs no user code that
        // may panic halfway through a change (the routing function is caught), so the state
        // behind a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands one turn to its participant. A refused delivery needs nothing more here: the
    /// participant has stopped, and its exit applies the crash policy to the open turn.
    pub(crate) async fn deliver(self: &Arc<Self>, delivery: Delivery<Req>) {
        let Some(participant) = self.participants.get(delivery.member) else {
            return;
        };
        let sink: Weak<dyn ReplySink<Resp>> = Arc::downgrade(self) as Weak<dyn ReplySink<Resp>>;
        let turn = Turn::new(
            delivery.request,
            ConversationReply::new(sink, delivery.turn),
        );
        if let Err(error) = participant.deliver(turn).await {
            tracing::debug!(
                conversation = self.id,
                participant = %participant.id(),
                %error,
                "turn not delivered; the participant's exit settles it"
            );
        }
    }

    /// Starts one watcher per participant and the deadline timer.
    pub(crate) fn start_tasks(self: &Arc<Self>, deadline: Option<std::time::Duration>) {
        for (member, participant) in self.participants.iter().enumerate() {
            let exited = participant.exited();
            let shared = Arc::downgrade(self);
            let watcher = self.runtime.spawn(async move {
                let reason = exited.await;
                if let Some(shared) = shared.upgrade() {
                    shared.participant_exited(member, reason).await;
                }
            });
            self.track(watcher.abort_handle());
        }
        if let Some(deadline) = deadline {
            // The deadline counts from now, not from when the timer task first runs.
            let at = tokio::time::Instant::now() + deadline;
            let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
            let shared = Arc::downgrade(self);
            let timer = self.runtime.spawn(async move {
                tokio::time::sleep_until(at).await;
                if let Some(shared) = shared.upgrade() {
                    shared.update(|inner| {
                        inner.fail(ConversationError::DeadlineExceeded { deadline_ms })
                    });
                }
            });
            self.track(timer.abort_handle());
        }
    }

    async fn participant_exited(self: Arc<Self>, member: usize, reason: StopReason) {
        match self.update(|inner| inner.participant_exited(member, reason)) {
            AfterExit::Nothing => {}
            AfterExit::Reroute(deliveries) => {
                for delivery in deliveries {
                    self.deliver(delivery).await;
                }
            }
            AfterExit::Compensate(compensation, report) => {
                self.spawn_compensation(compensation, report);
            }
        }
    }

    /// Runs the compensation on its own task, which is not stopped with the conversation:
    /// once started, a compensation runs to its end, since stopping it midway would leave
    /// the work half undone.
    fn spawn_compensation(
        self: &Arc<Self>,
        compensation: Compensation<Req>,
        report: CrashReport<Req>,
    ) {
        let shared = Arc::downgrade(self);
        let id = self.id;
        let participant = report.participant.clone();
        let reason = report.reason.clone();
        tracing::info!(conversation = id, %participant, "compensation started");
        self.runtime.spawn(async move {
            let outcome =
                match std::panic::catch_unwind(AssertUnwindSafe(|| compensation.start(report))) {
                    Ok(running) => AssertUnwindSafe(running).catch_unwind().await,
                    Err(payload) => Err(payload),
                };
            let outcome = match outcome {
                Ok(Ok(())) => ConversationError::Compensated {
                    participant,
                    reason,
                },
                Ok(Err(error)) => ConversationError::CompensationFailed {
                    participant,
                    error: error.to_string(),
                },
                Err(payload) => ConversationError::CompensationFailed {
                    participant,
                    error: PanicError::from_payload(payload).to_string(),
                },
            };
            tracing::info!(conversation = id, outcome = %outcome, "compensation finished");
            let failed = shared
                .upgrade()
                .is_some_and(|shared| shared.update(|inner| inner.finish_compensation(outcome)));
            if !failed {
                tracing::debug!(conversation = id, "the conversation had already ended");
            }
        });
    }

    fn track(&self, task: AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        match tasks.as_mut() {
            Some(running) => running.push(task),
            // Ended while the tasks were being started.
            None => task.abort(),
        }
    }

    fn stop_tasks(&self) {
        let tasks = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for task in tasks.into_iter().flatten() {
            task.abort();
        }
    }
}

impl<Req, Resp> ReplySink<Resp> for Shared<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    fn reply(
        &self,
        turn: TurnId,
        reply: Option<Resp>,
        last: bool,
    ) -> Result<(), ConversationError> {
        let carries_reply = reply.is_some();
        self.update(|inner| inner.accept_reply(turn, reply, last))?;
        if carries_reply {
            self.replies.notify_one();
        }
        Ok(())
    }

    fn is_open(&self, turn: TurnId) -> bool {
        self.lock().is_open(turn)
    }
}

impl<Req, Resp> Drop for Shared<Req, Resp> {
    fn drop(&mut self) {
        // The watchers hold only weak refs, but each keeps its participant's ref alive.
        let tasks = self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for task in tasks.into_iter().flatten() {
            task.abort();
        }
    }
}
