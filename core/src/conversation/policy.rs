//! How a conversation routes requests and what it does when a participant crashes.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::actor::{BoxError, StopReason};
use crate::id::ActorId;

type RouteFn<Req> = dyn Fn(&Req, &[ActorId]) -> Option<usize> + Send + Sync;
type CompensateFn<Req> =
    dyn FnOnce(CrashReport<Req>) -> BoxFuture<'static, Result<(), BoxError>> + Send;

/// Which participants a request goes to. Only live participants are ever chosen.
pub enum Routing<Req> {
    /// Every live participant gets every request.
    Broadcast,
    /// One participant per request, taking turns in the order they were added.
    RoundRobin,
    /// The first live participant, in the order they were added.
    FirstLive,
    /// A function of the request and the live participants' ids (in the order they were
    /// added, never empty) returns the index of the one to use; `None`, an index out of
    /// range or a panic fails the send with [`NoRoute`](crate::ConversationError::NoRoute).
    /// It runs under the conversation's lock, so keep it short.
    Custom(Arc<RouteFn<Req>>),
}

impl<Req> Routing<Req> {
    /// Routes with `choose`; see [`Routing::Custom`].
    ///
    /// ```
    /// use plexus_core::Routing;
    ///
    /// // Even requests to the first live participant, odd ones to the last.
    /// let routing = Routing::custom(|n: &u32, live| Some(if n % 2 == 0 { 0 } else { live.len() - 1 }));
    /// # let _ = routing;
    /// ```
    pub fn custom(
        choose: impl Fn(&Req, &[ActorId]) -> Option<usize> + Send + Sync + 'static,
    ) -> Self {
        Routing::Custom(Arc::new(choose))
    }
}

impl<Req> Default for Routing<Req> {
    /// [`Routing::Broadcast`].
    fn default() -> Self {
        Routing::Broadcast
    }
}

impl<Req> Clone for Routing<Req> {
    fn clone(&self) -> Self {
        match self {
            Routing::Broadcast => Routing::Broadcast,
            Routing::RoundRobin => Routing::RoundRobin,
            Routing::FirstLive => Routing::FirstLive,
            Routing::Custom(choose) => Routing::Custom(choose.clone()),
        }
    }
}

impl<Req> fmt::Debug for Routing<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Routing::Broadcast => "Broadcast",
            Routing::RoundRobin => "RoundRobin",
            Routing::FirstLive => "FirstLive",
            Routing::Custom(_) => "Custom",
        })
    }
}

/// What a conversation does when a participant crashes.
///
/// A participant's exit counts as a crash when its [`StopReason`] is abnormal, or when it
/// stops (for any reason) with turns it has not answered. A participant that stops normally
/// with nothing open only leaves the routing.
pub enum CrashPolicy<Req> {
    /// Fail the conversation and every pending receive with
    /// [`ParticipantCrashed`](crate::ConversationError::ParticipantCrashed).
    Fail,
    /// Re-send every request the crashed participant had not answered to the next live
    /// participant (in the order they were added, after the crashed one) that has not been
    /// given that request yet, and go on. Under [`Routing::Broadcast`] every live
    /// participant already has the request, so the conversation just goes on without the
    /// crashed one. When no live participant is left, the conversation fails with
    /// `ParticipantCrashed`. A turn counts as answered only once finished, so a request
    /// whose streamed answer the crash cut short is re-sent whole; the replies already
    /// streamed stay received.
    RouteToNext,
    /// Run the compensation for the work already done, once, then fail the conversation
    /// with its outcome: [`Compensated`](crate::ConversationError::Compensated) or
    /// [`CompensationFailed`](crate::ConversationError::CompensationFailed). While it runs,
    /// sends are refused and replies still arrive.
    Compensate(Compensation<Req>),
}

impl<Req> CrashPolicy<Req> {
    /// [`CrashPolicy::Compensate`] with `compensate`.
    pub fn compensate<F, Fut>(compensate: F) -> Self
    where
        F: FnOnce(CrashReport<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        CrashPolicy::Compensate(Compensation::new(compensate))
    }
}

impl<Req> Default for CrashPolicy<Req> {
    /// [`CrashPolicy::Fail`].
    fn default() -> Self {
        CrashPolicy::Fail
    }
}

impl<Req> fmt::Debug for CrashPolicy<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CrashPolicy::Fail => "Fail",
            CrashPolicy::RouteToNext => "RouteToNext",
            CrashPolicy::Compensate(_) => "Compensate",
        })
    }
}

/// A saga-style compensation: an async function run at most once, for the first crash.
pub struct Compensation<Req> {
    run: Box<CompensateFn<Req>>,
}

impl<Req> Compensation<Req> {
    /// A compensation that runs `compensate` with the report of the crash. Its error, or a
    /// panic in it, becomes [`CompensationFailed`](crate::ConversationError::CompensationFailed).
    pub fn new<F, Fut>(compensate: F) -> Self
    where
        F: FnOnce(CrashReport<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Compensation {
            run: Box::new(move |report| Box::pin(compensate(report))),
        }
    }

    pub(crate) fn start(
        self,
        report: CrashReport<Req>,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        (self.run)(report)
    }
}

impl<Req> fmt::Debug for Compensation<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compensation").finish_non_exhaustive()
    }
}

/// What a compensation is told: who crashed, and the work done before.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrashReport<Req> {
    /// The participant whose crash started the compensation.
    pub participant: ActorId,
    /// Why it stopped.
    pub reason: StopReason,
    /// Every turn answered so far, in the order they finished: the work to compensate.
    pub completed: Vec<CompletedTurn<Req>>,
    /// The requests the crashed participant had not answered, in the order they were sent.
    pub unanswered: Vec<Req>,
}

/// One request a participant answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompletedTurn<Req> {
    /// The participant that answered.
    pub participant: ActorId,
    /// The request it answered.
    pub request: Req,
}
