//! A global allocator that zeroes every block before giving it back.
//!
//! NIRs and codes pass through buffers we do not own (hyper's and rustls's
//! read and write buffers, serde's temporaries). Wiping on free covers them
//! all, so a freed buffer never leaves personal data in the heap for a later
//! allocation or a memory dump to find. Buffers still alive are wiped by their
//! owners (`zeroize`) once a batch is answered.
//!
//! Blocks of [`LARGE`] bytes or more (a batch's chunks and answers, TLS
//! buffers) are mapped from the kernel for themselves, in lengths rounded up
//! to [`CLASS`], and the service's memory stays what its live buffers need.
//! This matters once the service has locked its memory (`crate::harden`):
//! the C allocator gives freed heap pages back with `MADV_DONTNEED`, which
//! locked pages refuse, so a heap grown by large buffers would stay at its
//! highest. A freed mapping is wiped and kept for the next block of its
//! length, up to [`CACHE_BYTES`] in all (past that, kept mappings of other
//! lengths make room for it, or it is unmapped): mapping
//! anew costs a page fault, the kernel's zeroing and the lock's accounting
//! for every page, several times the wipe, and a batch frees and takes a
//! chunk's buffers a few thousand times a second.
//!
//! `unsafe` here and in the SHA-NI kernel only: a `GlobalAlloc` cannot be
//! written without it.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are mapped on their own.
pub const LARGE: usize = 128 * 1024;

const PAGE: usize = 4096;

/// Mappings are made in multiples of this length, so that a freed one fits
/// the next block of about its size.
pub const CLASS: usize = 64 * 1024;

/// Wiped mappings kept for reuse, in bytes at most.
pub const CACHE_BYTES: usize = 8 << 20;

const CACHE_SLOTS: usize = 32;

fn mapped(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

/// The length of the mapping that holds a block of `size` bytes.
fn class(size: usize) -> usize {
    size.next_multiple_of(CLASS)
}

/// Freed mappings, wiped, by address and length (0: an empty slot).
struct Cache {
    slots: [(usize, usize); CACHE_SLOTS],
    bytes: usize,
}

static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(Cache {
    slots: [(0, 0); CACHE_SLOTS],
    bytes: 0,
});

impl Cache {
    /// Takes a slot for a freed mapping of `len` bytes, marked [`WIPING`],
    /// first moving kept mappings of other lengths to `evicted` while the
    /// cache has no room. `None`: not kept (the cache is full of mappings of
    /// this length, or of ones still being wiped).
    fn make_room(
        &mut self,
        len: usize,
        evicted: &mut [(usize, usize); CACHE_SLOTS],
    ) -> Option<usize> {
        let evictable = |s: &(usize, usize)| s.1 != 0 && s.1 != len && s.0 != WIPING;
        let could_free: usize = self
            .slots
            .iter()
            .filter(|s| evictable(s))
            .map(|s| s.1)
            .sum();
        let free_slots = self.slots.iter().filter(|s| s.1 == 0).count();
        let could_slot = free_slots + self.slots.iter().filter(|s| evictable(s)).count();
        if len > CACHE_BYTES || self.bytes - could_free + len > CACHE_BYTES || could_slot == 0 {
            // Not kept whatever goes: nothing is evicted for nothing.
            return None;
        }
        let mut free = free_slots;
        for (slot, out) in self.slots.iter_mut().zip(evicted.iter_mut()) {
            if self.bytes + len <= CACHE_BYTES && free > 0 {
                break;
            }
            if evictable(slot) {
                self.bytes -= slot.1;
                free += 1;
                *out = std::mem::take(slot);
            }
        }
        if self.bytes + len > CACHE_BYTES {
            return None;
        }
        let i = self.slots.iter().position(|s| s.1 == 0)?;
        self.slots[i] = (WIPING, len);
        self.bytes += len;
        Some(i)
    }
}

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A kept mapping of exactly `len` bytes (all zero), or null.
fn take_cached(len: usize) -> *mut u8 {
    let mut c = cache();
    match c.slots.iter().position(|s| s.1 == len && s.0 != WIPING) {
        Some(i) => {
            let (addr, _) = std::mem::take(&mut c.slots[i]);
            c.bytes -= len;
            addr as *mut u8
        }
        None => std::ptr::null_mut(),
    }
}

/// An address no mapping has: marks a slot taken by a mapping still being
/// wiped, which [`take_cached`] must not hand out yet.
const WIPING: usize = usize::MAX;

/// Keeps a freed mapping of `len` bytes, of which the first `used` may hold
/// data, wiped; or unmaps it when the cache is full of mappings of its own
/// length (the kernel zeroes its pages before any reuse, so it is not wiped
/// first). Kept mappings of other lengths make room for it: the lengths a
/// batch frees and takes again are those of its chunks and answers, and a
/// cache left full of another batch's lengths would map every one anew.
///
/// # Safety
/// `ptr` must be a mapping of `len` bytes made by [`map`], zero past `used`,
/// that nothing else uses.
unsafe fn give_back(ptr: *mut u8, len: usize, used: usize) {
    // Unmapped after the lock is let go (no allocation here: we are the
    // allocator).
    let mut evicted = [(0usize, 0usize); CACHE_SLOTS];
    let slot = cache().make_room(len, &mut evicted);
    for (addr, kept) in evicted {
        if kept != 0 {
            // SAFETY: a kept mapping of `kept` bytes, taken out of the cache
            // under its lock, so used by nothing else; wiped when kept.
            let _ = unsafe { rustix::mm::munmap(addr as *mut std::ffi::c_void, kept) };
        }
    }
    match slot {
        Some(i) => {
            // SAFETY: the caller's block, valid for `used` bytes; then its
            // slot is filled in, the mapping all zero.
            unsafe { wipe(ptr, used) };
            cache().slots[i] = (ptr as usize, len);
        }
        None => {
            // SAFETY: the caller's mapping, used by nothing else; its pages
            // leave the process.
            let _ = unsafe { rustix::mm::munmap(ptr.cast(), len) };
        }
    }
}

/// A zeroed mapping for a block of `size` bytes: a kept one, or a new one.
///
/// # Safety
/// None beyond `mmap`'s (see [`map`]).
unsafe fn map_block(size: usize) -> *mut u8 {
    let len = class(size);
    let kept = take_cached(len);
    if !kept.is_null() {
        return kept;
    }
    // SAFETY: see `map`.
    unsafe { map(len) }
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
            // SAFETY: see `map_block`.
            return unsafe { map_block(layout.size()) };
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            // SAFETY: see `map_block`; its pages come zeroed (new from the
            // kernel, or wiped when given back).
            return unsafe { map_block(layout.size()) };
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            // SAFETY: `ptr` is the mapping `alloc` made for this layout's
            // size, `class(size)` bytes long; the caller wrote at most
            // `size` of them (the rest is still zero).
            unsafe { give_back(ptr, class(layout.size()), layout.size()) };
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
            if mapped(&layout) && mapped(&new_layout) && class(layout.size()) == class(new_size) {
                // The same mapping holds it: grown in place, or shrunk with
                // its cut-off tail wiped (a later free wipes `new_size`).
                if new_size < layout.size() {
                    wipe(ptr.add(new_size), layout.size() - new_size);
                }
                return ptr;
            }
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
    fn a_freed_mapping_is_wiped_before_it_is_kept_and_given_again() {
        let layout = Layout::from_size_align(LARGE + 1000, 8).unwrap();
        // SAFETY: test of the allocator itself, with valid layouts.
        unsafe {
            let p = ZeroizingAlloc.alloc(layout);
            std::ptr::write_bytes(p, 0xC3, layout.size());
            // Grown within its class: the same mapping.
            let q = ZeroizingAlloc.realloc(p, layout, LARGE + 2000);
            assert_eq!(p, q);
            // Shrunk within its class: the cut-off tail is wiped.
            let shrunk = Layout::from_size_align(LARGE + 10, 8).unwrap();
            let r = ZeroizingAlloc.realloc(
                q,
                Layout::from_size_align(LARGE + 2000, 8).unwrap(),
                shrunk.size(),
            );
            assert_eq!(r, q);
            assert!((LARGE + 10..class(LARGE + 2000)).all(|i| *r.add(i) == 0));
            ZeroizingAlloc.dealloc(r, shrunk);
            // Whichever mapping comes back (another thread may have taken
            // this one), it is all zero.
            let z = ZeroizingAlloc.alloc(layout);
            assert!((0..class(layout.size())).all(|i| *z.add(i) == 0));
            ZeroizingAlloc.dealloc(z, layout);
        }
        assert!(cache().bytes <= CACHE_BYTES);
    }

    #[test]
    fn kept_mappings_of_other_lengths_make_room_for_a_freed_one() {
        let (a, b) = (5 * CLASS, 7 * CLASS);
        let full_of = |len: usize| {
            let mut c = Cache {
                slots: [(0, 0); CACHE_SLOTS],
                bytes: 0,
            };
            for (i, s) in c.slots.iter_mut().enumerate() {
                if c.bytes + len > CACHE_BYTES {
                    break;
                }
                *s = (PAGE * (i + 1), len);
                c.bytes += len;
            }
            c
        };
        // Full of another length: enough of it goes, the rest stays.
        let mut c = full_of(a);
        let mut evicted = [(0, 0); CACHE_SLOTS];
        let i = c.make_room(b, &mut evicted).expect("room made");
        assert_eq!(c.slots[i], (WIPING, b));
        let gone: usize = evicted.iter().map(|e| e.1).sum();
        assert!(gone >= b - (CACHE_BYTES - full_of(a).bytes) && gone < b + a);
        assert!(evicted.iter().all(|e| e.1 == 0 || e.1 == a));
        assert_eq!(c.bytes, full_of(a).bytes - gone + b);
        assert!(c.bytes <= CACHE_BYTES);
        // Full of its own length: not kept, nothing evicted.
        let mut c = full_of(b);
        let mut evicted = [(0, 0); CACHE_SLOTS];
        assert_eq!(c.make_room(b, &mut evicted), None);
        assert!(evicted.iter().all(|e| e.1 == 0));
        // A mapping still being wiped is never evicted.
        let mut c = full_of(a);
        for s in &mut c.slots {
            if s.1 != 0 {
                s.0 = WIPING;
            }
        }
        let mut evicted = [(0, 0); CACHE_SLOTS];
        assert_eq!(c.make_room(b, &mut evicted), None);
        assert!(evicted.iter().all(|e| e.1 == 0));
        // Evicting every other length would not make room: nothing goes.
        let mut c = full_of(b);
        let i = c.slots.iter().position(|s| s.1 == 0).unwrap();
        if c.bytes + CLASS <= CACHE_BYTES {
            c.slots[i] = (PAGE * 1000, CLASS);
            c.bytes += CLASS;
        }
        let mut evicted = [(0, 0); CACHE_SLOTS];
        assert_eq!(c.make_room(b, &mut evicted), None);
        assert!(evicted.iter().all(|e| e.1 == 0));
        // Longer than the whole cache: never kept.
        let mut c = full_of(a);
        let mut evicted = [(0, 0); CACHE_SLOTS];
        assert_eq!(c.make_room(CACHE_BYTES + CLASS, &mut evicted), None);
        assert!(evicted.iter().all(|e| e.1 == 0));
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
