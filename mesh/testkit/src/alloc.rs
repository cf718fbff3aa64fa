//! A global allocator that counts the allocations a thread makes while it asks for counting, and is the
//! system allocator otherwise (one thread-local flag read per allocation). A binary or test installs it
//! with `#[global_allocator] static GLOBAL: Counting = Counting;`.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

/// The system allocator, counting allocations on threads inside [`allocations`].
pub struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to the system allocator; only a thread-local counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note() {
    // `try_with`: the thread may be tearing its locals down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

/// Counts the allocations made on this thread from [`Counter::start`] to [`Counter::stop`] (across
/// `.await`s only on a single-threaded runtime, where every task runs on this thread).
pub struct Counter(());

impl Counter {
    /// Starts counting on this thread, from zero.
    pub fn start() -> Self {
        ALLOCATIONS.with(|n| n.set(0));
        COUNTING.with(|on| on.set(true));
        Self(())
    }

    /// Stops counting and returns the count.
    pub fn stop(self) -> u64 {
        COUNTING.with(|on| on.set(false));
        ALLOCATIONS.with(Cell::get)
    }
}
