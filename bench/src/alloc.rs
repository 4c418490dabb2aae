//! A global allocator that counts live heap bytes, to measure memory per idle actor.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// The system allocator plus a counter of bytes currently allocated.
pub(crate) struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
/// Counting is off except while a workload weighs memory: a shared counter bumped on
/// every allocation would slow the messaging workloads (their allocations cross threads).
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Starts or stops counting; only allocations made while counting are tracked, so a
/// measurement must free nothing it did not allocate while counting.
pub(crate) fn set_counting(on: bool) {
    COUNTING.store(on, Ordering::SeqCst);
}

/// Bytes allocated and not yet freed, across all threads.
pub(crate) fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::SeqCst)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only
// observes sizes. This is the one unsafe block of the workspace, in the benchmark binary,
// because a global allocator cannot be written without it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
