//! A global allocator that zeroes every block before giving it back.
//!
//! NIRs and codes pass through buffers we do not own (hyper's and rustls's
//! read and write buffers, serde's temporaries). Wiping on free covers them
//! all, so a freed buffer never leaves personal data in the heap for a later
//! allocation or a memory dump to find. Buffers still alive are wiped by their
//! owners (`zeroize`) once a batch is answered.
//!
//! This is the crate's only `unsafe`: a `GlobalAlloc` cannot be written
//! without it.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Zeroes on `dealloc` and on the old block of a `realloc`.
pub struct ZeroizingAlloc;

// SAFETY: every method forwards to `System` with the caller's layout, which
// upholds `GlobalAlloc`'s contract; the extra work only writes zeros inside
// blocks the caller owns and is about to give back.
unsafe impl GlobalAlloc for ZeroizingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes owned by the
        // caller (GlobalAlloc contract); volatile writes cannot be elided.
        unsafe {
            wipe(ptr, layout.size());
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Never let the system move a block without wiping the old copy:
        // allocate, copy, wipe, free.
        // SAFETY: `new_size` is non-zero and valid for `layout.align()`
        // (GlobalAlloc contract); both blocks are live and distinct.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = System.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                wipe(ptr, layout.size());
                System.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// Zeroes `len` bytes at `ptr` in a way the optimiser keeps.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: caller guarantees validity; `write_bytes` then a compiler fence
    // keeps the stores (the block is freed right after, which the optimiser
    // could otherwise treat as making them dead).
    unsafe {
        std::ptr::write_bytes(ptr, 0, len);
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    // Read one byte back through a volatile load so the memset is observable.
    if len > 0 {
        // SAFETY: `ptr` is valid for `len >= 1` bytes.
        let _ = unsafe { std::ptr::read_volatile(ptr) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_and_moved_blocks_are_wiped() {
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: test of the allocator itself, with valid layouts.
        unsafe {
            let p = ZeroizingAlloc.alloc(layout);
            std::ptr::write_bytes(p, 0xAB, 64);
            let q = ZeroizingAlloc.realloc(p, layout, 4096);
            assert_eq!(*q.add(63), 0xAB);
            let big = Layout::from_size_align(4096, 8).unwrap();
            wipe(q, 4096);
            assert!((0..4096).all(|i| *q.add(i) == 0));
            ZeroizingAlloc.dealloc(q, big);
        }
    }
}
