//! Late reports of remote tells: a tell that the route accepted and that was lost further
//! on (the dial failed later, the connection died with it queued, the remote side
//! refused it) goes back to the sending proc's undeliverable handler (design 3.5, 3.9).
//!
//! By then the message exists only as bytes, so what the handler receives in
//! [`Undeliverable::message`] is an [`UndeliveredRemote`]: the wire name and, when the
//! route still had them, the postcard bytes of the message. Its
//! [`message_type`](Undeliverable::message_type) is the type name of
//! [`UndeliveredRemote`], which tells such a report apart from one that carries the
//! message itself (an early failure, reported by the remote ref with the typed message).

use crate::error::{Undeliverable, UndeliverableReason};
use crate::id::ActorId;
use crate::proc::Proc;

/// What is left of a remote tell lost after its route accepted it; the boxed
/// [`Undeliverable::message`] of a late report.
///
/// ```
/// use plexus_core::{ActorId, ProcId, UndeliveredRemote};
///
/// let lost = UndeliveredRemote {
///     sender: None,
///     name: "app.Work".to_owned(),
///     payload: Some(vec![1, 2, 3]),
/// };
/// assert_eq!(lost.name, "app.Work");
/// # let _ = ActorId::new(ProcId::new("p", 1), "a", 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndeliveredRemote {
    /// The sending actor, when the tell was sent from an actor's task.
    pub sender: Option<ActorId>,
    /// The wire name of the message ([`RemoteMessage::NAME`](crate::RemoteMessage::NAME)).
    pub name: String,
    /// The postcard bytes of the message, when the route still held them; `None` when it
    /// only kept the envelope's header. A handler that knows the type may decode them to
    /// retry or persist the message.
    pub payload: Option<Vec<u8>>,
}

impl Proc {
    /// Reports a remote tell from this proc that was lost after its route accepted it:
    /// counted in [`undeliverable_count`](Proc::undeliverable_count), logged, and handed
    /// to the undeliverable handler as an [`Undeliverable`] whose `message` is `lost`
    /// (downcast it to [`UndeliveredRemote`]).
    ///
    /// Called by the gateway on every path where a tell fails after
    /// [`RemoteRoute::tell`](crate::RemoteRoute::tell) or
    /// [`try_tell`](crate::RemoteRoute::try_tell) returned `Ok`, so that for every tell
    /// sent, delivered + reported undeliverable = sent. A tell whose route call failed is
    /// reported by the remote ref itself, with the typed message; never report it twice.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    ///
    /// use plexus_core::{
    ///     ActorId, Proc, ProcId, TellError, UndeliverableReason, UndeliveredRemote,
    /// };
    ///
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&seen);
    /// let proc = Proc::builder(ProcId::unique("docs"))
    ///     .on_undeliverable(move |lost| {
    ///         if lost.message.downcast_ref::<UndeliveredRemote>().is_some() {
    ///             counter.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .build();
    /// let recipient = ActorId::new(ProcId::new("far", 1), "worker", 0);
    /// let reason = UndeliverableReason::RemoteSendFailed(TellError::Disconnected {
    ///     recipient: recipient.clone(),
    /// });
    /// let lost = UndeliveredRemote { sender: None, name: "app.Work".into(), payload: None };
    /// proc.report_remote_undeliverable(recipient, lost, reason);
    /// assert_eq!(proc.undeliverable_count(), 1);
    /// assert_eq!(seen.load(Ordering::Relaxed), 1);
    /// ```
    pub fn report_remote_undeliverable(
        &self,
        recipient: ActorId,
        lost: UndeliveredRemote,
        reason: UndeliverableReason,
    ) {
        self.inner.undeliverable(Undeliverable {
            recipient,
            message_type: std::any::type_name::<UndeliveredRemote>(),
            reason,
            message: Box::new(lost),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::error::TellError;
    use crate::id::ProcId;

    use super::*;

    /// A late report reaches the handler with the wire name, the payload and the reason,
    /// and is counted.
    #[test]
    fn late_report_reaches_the_handler() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let proc = Proc::builder(ProcId::new("sender", 1))
            .on_undeliverable(move |lost| {
                let remote = lost.message.downcast_ref::<UndeliveredRemote>().cloned();
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((lost.recipient, lost.message_type, lost.reason, remote));
            })
            .build();
        let recipient = ActorId::new(ProcId::new("far", 2), "worker", 0);
        let reason = UndeliverableReason::RemoteSendFailed(TellError::Disconnected {
            recipient: recipient.clone(),
        });
        let lost = UndeliveredRemote {
            sender: Some(ActorId::new(ProcId::new("sender", 1), "client", 0)),
            name: "app.Work".into(),
            payload: Some(vec![7]),
        };
        proc.report_remote_undeliverable(recipient.clone(), lost.clone(), reason.clone());
        assert_eq!(proc.undeliverable_count(), 1);
        let seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert_eq!(
            *seen,
            vec![(
                recipient,
                std::any::type_name::<UndeliveredRemote>(),
                reason,
                Some(lost)
            )]
        );
    }
}
