//! Wake-up batching for the sensors' ring buffers (see `nodeward_common::wakeup`).

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use nodeward_common::wakeup::{INTERVAL_NS, RING_COUNT};

#[map]
static RING_LAST_WAKEUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(RING_COUNT, 0);

/// The flags to submit a record to `ring` (slot `slot`) with at time `now`.
#[inline(always)]
pub fn flags(ring: &RingBuf, slot: u32, threshold: u64, now: u64) -> u64 {
    let Some(last) = RING_LAST_WAKEUP.get_ptr_mut(slot) else {
        return 0;
    };
    // SAFETY: `last` points at this CPU's slot; a program does not migrate while it runs.
    unsafe {
        if now.wrapping_sub(*last) >= INTERVAL_NS
            || ring.query(u64::from(BPF_RB_AVAIL_DATA)) >= threshold
        {
            *last = now;
            u64::from(BPF_RB_FORCE_WAKEUP)
        } else {
            u64::from(BPF_RB_NO_WAKEUP)
        }
    }
}
