//! Evidence that the host did not copy something large: a global allocator
//! that remembers the largest single allocation made on a thread while
//! that thread is being watched.
//!
//! A `#[tokio::test]` runs on a current-thread runtime, so every task of
//! the call under test (the sandbox's lift of the guest's result
//! included) allocates on the watched thread. Guest linear memory is
//! mapped by wasmtime, not allocated here, so it does not count.

// A global allocator cannot be written without `unsafe`; this one only
// forwards to `System` and is test code.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Tracking;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations during thread teardown are not watched.
    let _ = WATCHING.try_with(|watching| {
        if watching.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every method forwards to `System` unchanged; `note` only reads
// and writes two const-initialised thread-local cells, which never
// allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `work` to completion and returns its output with the size of the
/// largest single allocation made on this thread meanwhile.
pub async fn largest_allocation_during<F: Future>(work: F) -> (F::Output, usize) {
    LARGEST.with(|largest| largest.set(0));
    WATCHING.with(|watching| watching.set(true));
    let output = work.await;
    WATCHING.with(|watching| watching.set(false));
    (output, LARGEST.with(Cell::get))
}
