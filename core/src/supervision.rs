//! Supervision: restart policies, strategies, the restart budget and the bookkeeping a
//! parent keeps of its children.
//!
//! A child that ends an incarnation reports to its parent and waits, mailbox intact, for a
//! decision. Group strategies first ask the affected siblings to end their incarnations,
//! then restart the whole group in start order:
//!
//! ```text
//! Running ──exit──▶ Exited (awaits decision) ──Restart──▶ Running
//!    │                     └──Stop──▶ removed
//!    └──sibling failed (group)──▶ Stopping ──exit──▶ Exited
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actor::StopReason;
use crate::cell::ErasedCell;
use crate::id::ActorId;
use crate::mailbox::Mailbox;
use crate::signal::StopRequest;
use crate::signal::{Decision, Signal};

/// When a supervised child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Restart {
    /// Always, whether it stopped itself normally or failed; only a stop request through a
    /// ref or a shutdown ends it for good.
    Permanent,
    /// Only when it failed ([`StopReason::is_abnormal`]).
    Transient,
    /// Never; when a group strategy restarts its siblings, it is stopped instead.
    Never,
}

/// Which children restart when one fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Strategy {
    /// Only the child that failed.
    OneForOne,
    /// Every child.
    OneForAll,
    /// The child that failed and every child started after it.
    RestForOne,
}

/// How an actor supervises its children: the strategy and the restart budget.
///
/// More than `max_restarts` restarts within `within` make the supervisor give up: it stops
/// all its children and stops itself with [`StopReason::Escalated`], so its own supervisor
/// decides next.
///
/// ```
/// use plexus_core::{Strategy, Supervision};
/// use std::time::Duration;
///
/// let policy = Supervision::new(Strategy::RestForOne).budget(5, Duration::from_secs(10));
/// assert_eq!(policy.max_restarts, 5);
/// assert_eq!(Supervision::default().strategy, Strategy::OneForOne);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Supervision {
    /// Which children restart when one fails.
    pub strategy: Strategy,
    /// Restarts allowed within the window; default 3.
    pub max_restarts: u32,
    /// The sliding window of the budget; default 5 seconds.
    pub within: Duration,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            strategy: Strategy::OneForOne,
            max_restarts: 3,
            within: Duration::from_secs(5),
        }
    }
}

impl Supervision {
    /// The default budget with the given strategy.
    pub fn new(strategy: Strategy) -> Self {
        Supervision {
            strategy,
            ..Supervision::default()
        }
    }

    /// Sets the restart budget: at most `max_restarts` within `within`.
    pub fn budget(mut self, max_restarts: u32, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }
}

/// How to make (and remake) a supervised child. Pass it to
/// [`Context::spawn_child`](crate::Context::spawn_child).
///
/// ```
/// use plexus_core::{Actor, ChildSpec, Mailbox, Restart};
///
/// struct Worker { jobs: u32 }
/// impl Actor for Worker {}
///
/// let spec = ChildSpec::new("worker-1", || Worker { jobs: 0 })
///     .restart(Restart::Transient)
///     .mailbox(Mailbox::Bounded(64));
/// assert_eq!(spec.name(), "worker-1");
/// ```
pub struct ChildSpec<A> {
    pub(crate) name: String,
    pub(crate) first: A,
    pub(crate) factory: Factory<A>,
    pub(crate) restart: Restart,
    pub(crate) mailbox: Option<Mailbox>,
}

impl<A> fmt::Debug for ChildSpec<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

impl<A: Send + 'static> ChildSpec<A> {
    /// A permanent child made by `factory`, which runs now for the first incarnation and
    /// again for every restart.
    pub fn new(name: impl Into<String>, mut factory: impl FnMut() -> A + Send + 'static) -> Self {
        ChildSpec {
            name: name.into(),
            first: factory(),
            factory: Some(Box::new(factory)),
            restart: Restart::Permanent,
            mailbox: None,
        }
    }

    /// A child from one value; it cannot be remade, so its policy is [`Restart::Never`].
    pub fn once(name: impl Into<String>, actor: A) -> Self {
        ChildSpec {
            name: name.into(),
            first: actor,
            factory: None,
            restart: Restart::Never,
            mailbox: None,
        }
    }

    /// Sets the restart policy (ignored for [`ChildSpec::once`], which cannot restart).
    pub fn restart(mut self, restart: Restart) -> Self {
        if self.factory.is_some() {
            self.restart = restart;
        }
        self
    }

    /// Sets the mailbox; the proc's default otherwise.
    pub fn mailbox(mut self, mailbox: Mailbox) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Makes the actor value of each incarnation after the first; `None` when it cannot be
/// remade.
pub(crate) type Factory<A> = Option<Box<dyn FnMut() -> A + Send>>;

/// What the parent's run loop must do after a child's exit.
pub(crate) enum Verdict {
    Continue,
    /// The restart budget is spent: stop with this reason.
    Escalate(StopReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Asked to end its incarnation for a group restart.
    Stopping,
    /// Ended an incarnation; waits for the group's decision.
    Exited,
}

struct Child {
    id: ActorId,
    cell: Arc<dyn ErasedCell>,
    restart: Restart,
    phase: Phase,
}

/// A parent's view of its children, in start order, and its recent restarts.
#[derive(Default)]
pub(crate) struct Supervisor {
    children: Vec<Child>,
    restarts: VecDeque<Instant>,
}

impl Supervisor {
    pub(crate) fn add(&mut self, id: ActorId, cell: Arc<dyn ErasedCell>, restart: Restart) {
        self.children.push(Child {
            id,
            cell,
            restart,
            phase: Phase::Running,
        });
    }

    pub(crate) fn child_ids(&self) -> Vec<ActorId> {
        self.children.iter().map(|child| child.id.clone()).collect()
    }

    pub(crate) fn child_exited(
        &mut self,
        policy: &Supervision,
        id: &ActorId,
        reason: StopReason,
        last: bool,
    ) -> Verdict {
        let Some(pos) = self.children.iter().position(|child| &child.id == id) else {
            return Verdict::Continue;
        };
        if last {
            self.children.remove(pos);
            self.restart_group_if_complete();
            return Verdict::Continue;
        }
        if self.children[pos].phase == Phase::Stopping {
            self.children[pos].phase = Phase::Exited;
            self.restart_group_if_complete();
            return Verdict::Continue;
        }
        if !should_restart(self.children[pos].restart, &reason) {
            self.decide(pos, Decision::Stop);
            self.children.remove(pos);
            self.restart_group_if_complete();
            return Verdict::Continue;
        }
        if self.budget_spent(policy) {
            tracing::warn!(child = %id, reason = %reason, "restart budget spent, escalating");
            return Verdict::Escalate(StopReason::Escalated {
                child: id.clone(),
                reason: Box::new(reason),
            });
        }
        match policy.strategy {
            Strategy::OneForOne => self.decide(pos, Decision::Restart),
            Strategy::OneForAll | Strategy::RestForOne => {
                self.children[pos].phase = Phase::Exited;
                let first = if policy.strategy == Strategy::OneForAll {
                    0
                } else {
                    pos + 1
                };
                for child in &mut self.children[first..] {
                    if child.phase == Phase::Running {
                        child.phase = Phase::Stopping;
                        if child.cell.core().signal(Signal::Restart).is_err() {
                            // Already gone for good; its final report will remove it.
                            child.phase = Phase::Exited;
                        }
                    }
                }
                self.restart_group_if_complete();
            }
        }
        Verdict::Continue
    }

    /// Once no member of a group restart is still stopping, restarts the group in start
    /// order (children that never restart are stopped instead).
    fn restart_group_if_complete(&mut self) {
        if self
            .children
            .iter()
            .any(|child| child.phase == Phase::Stopping)
        {
            return;
        }
        let mut pos = 0;
        while pos < self.children.len() {
            if self.children[pos].phase != Phase::Exited {
                pos += 1;
            } else if self.children[pos].restart == Restart::Never {
                self.decide(pos, Decision::Stop);
                self.children.remove(pos);
            } else {
                self.decide(pos, Decision::Restart);
                self.children[pos].phase = Phase::Running;
                pos += 1;
            }
        }
    }

    fn decide(&self, pos: usize, decision: Decision) {
        // A child that is already gone needs no decision.
        let _ = self.children[pos]
            .cell
            .core()
            .signal(Signal::Decision(decision));
    }

    fn budget_spent(&mut self, policy: &Supervision) -> bool {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) > policy.within)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        self.restarts.len() > policy.max_restarts as usize
    }

    /// Stops every child for good, last started first, and waits for each.
    pub(crate) async fn shut_down_children(&mut self) {
        while let Some(child) = self.children.pop() {
            // A refused signal means the child is already finishing its final stop; either
            // way, wait until it is done.
            let _ = child
                .cell
                .core()
                .signals
                .request_stop(StopRequest::Shutdown);
            child.cell.core().exit.wait().await;
        }
        self.restarts.clear();
    }
}

fn should_restart(restart: Restart, reason: &StopReason) -> bool {
    match restart {
        Restart::Permanent => !matches!(reason, StopReason::Stopped | StopReason::Shutdown),
        Restart::Transient => reason.is_abnormal(),
        Restart::Never => false,
    }
}
