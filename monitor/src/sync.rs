//! Lock helpers shared by the monitor's modules.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Takes a mutex even if a thread panicked while holding it: every value guarded here is
/// left consistent between statements (counters, lists, options), so a poisoned lock
/// carries no broken invariant, and a monitor must keep reporting after a panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
