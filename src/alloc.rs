//! A global allocator that zeroes every block before giving it back.
//!
//! NIRs and codes pass through buffers we do not own (hyper's and rustls's
//! read and write buffers, serde's temporaries). Wiping on free covers them
//! all, so a freed buffer never leaves personal data in the heap for a later
//! allocation or a memory dump to find. Buffers still alive are wiped by their
//! owners (`zeroize`) once a batch is answered.
//!
//! Blocks of [`LARGE`] bytes or more (a batch's chunks and answers, TLS
//! buffers) are mapped from the kernel for themselves and unmapped when
//! freed: their pages go back to the kernel at once, which zeroes them
//! before any reuse, and the service's memory stays what its live buffers
//! need. This matters once the service has locked its memory
//! (`crate::harden`): the C allocator gives freed heap pages back with
//! `MADV_DONTNEED`, which locked pages refuse, so a heap grown by large
//! buffers would stay at its highest.
//!
//! `unsafe` here and in the SHA-NI kernel only: a `GlobalAlloc` cannot be
//! written without it.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are mapped on their own.
pub const LARGE: usize = 128 * 1024;

const PAGE: usize = 4096;

fn mapped(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

/// A fresh mapping of `size` bytes (zeroed by the kernel), or null.
///
/// # Safety
/// None beyond `mmap`'s: a new private anonymous mapping aliases nothing.
unsafe fn map(size: usize) -> *mut u8 {
    use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
    // SAFETY: a new mapping at an address the kernel picks.
    match unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    } {
        Ok(p) => p.cast(),
        Err(_) => std::ptr::null_mut(),
    }
}

/// Zeroes on `dealloc` and on the old block of a `realloc`; large blocks
/// are mappings of their own, given back unmapped.
pub struct ZeroizingAlloc;

// SAFETY: small blocks go to `System` with the caller's layout, which
// upholds `GlobalAlloc`'s contract; large ones are whole private mappings,
// page-aligned (enough for any `align <= PAGE`), unmapped with the size
// they were mapped with (the layout's, which the contract hands back). The
// extra work only writes zeros inside blocks the caller owns and is about
// to give back.
unsafe impl GlobalAlloc for ZeroizingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            // SAFETY: see `map`.
            return unsafe { map(layout.size()) };
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            // SAFETY: see `map`; the kernel's pages come zeroed.
            return unsafe { map(layout.size()) };
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            // SAFETY: `ptr` is the mapping `alloc` made for this layout's
            // size. Its pages leave the process; the kernel zeroes them
            // before handing them to anyone.
            let _ = unsafe { rustix::mm::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: `ptr` is a live block of `layout.size()` bytes owned by the
        // caller (GlobalAlloc contract); volatile writes cannot be elided.
        unsafe {
            wipe(ptr, layout.size());
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Never let the system move a block without wiping the old copy:
        // allocate, copy, free (which wipes or unmaps).
        // SAFETY: `new_size` is non-zero and valid for `layout.align()`
        // (GlobalAlloc contract); both blocks are live and distinct.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
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

    #[test]
    fn large_blocks_are_mappings_of_their_own_and_move_whole() {
        let small = Layout::from_size_align(1000, 8).unwrap();
        let large = Layout::from_size_align(LARGE, 64).unwrap();
        // SAFETY: test of the allocator itself, with valid layouts.
        unsafe {
            let p = ZeroizingAlloc.alloc(small);
            std::ptr::write_bytes(p, 0x5A, 1000);
            let q = ZeroizingAlloc.realloc(p, small, 3 * LARGE);
            assert_eq!(q as usize % PAGE, 0, "a mapping starts a page");
            assert!((0..1000).all(|i| *q.add(i) == 0x5A));
            let big = Layout::from_size_align(3 * LARGE, 8).unwrap();
            let r = ZeroizingAlloc.realloc(q, big, 100);
            assert!((0..100).all(|i| *r.add(i) == 0x5A));
            ZeroizingAlloc.dealloc(r, Layout::from_size_align(100, 8).unwrap());
            let z = ZeroizingAlloc.alloc_zeroed(large);
            assert!((0..LARGE).all(|i| *z.add(i) == 0));
            ZeroizingAlloc.dealloc(z, large);
        }
    }
}
