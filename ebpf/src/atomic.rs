//! Atomic adds on map values shared between CPUs. The bpfel target declares no
//! compare-and-swap, so `core::sync::atomic`'s read-modify-write methods do not exist;
//! the intrinsics below still lower to the BPF `lock add` instruction when their result is
//! unused, which every kernel since 4.x accepts.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

/// `*dst += n`, atomically.
///
/// # Safety
/// `dst` must point to a live, 8-byte aligned `u64` (a field of a map value).
#[inline(always)]
pub unsafe fn add(dst: *mut u64, n: u64) {
    // SAFETY: upheld by the caller.
    let _ = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, n) };
}
