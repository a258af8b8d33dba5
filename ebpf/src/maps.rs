//! Maps shared by the programs. Names must match the `MAP_*` constants in
//! `nodeward_common`, which is how the agent finds them.

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray, RingBuf},
};
use nodeward_common::imds::{EVENTS_RING_BYTES, ImdsConfig, MAX_BLOCKED_PREFIXES, STAT_COUNT};

#[map]
pub static IMDS_BLOCKED_V4: LpmTrie<[u8; 4], u32> =
    LpmTrie::with_max_entries(MAX_BLOCKED_PREFIXES, 0);

#[map]
pub static IMDS_BLOCKED_V6: LpmTrie<[u8; 16], u32> =
    LpmTrie::with_max_entries(MAX_BLOCKED_PREFIXES, 0);

#[map]
pub static IMDS_CONFIG: Array<ImdsConfig> = Array::with_max_entries(1, 0);

#[map]
pub static IMDS_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map]
pub static IMDS_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Adds one to a per-CPU counter. Per-CPU slots need no atomics: a program does not
/// migrate between CPUs while it runs.
#[inline(always)]
pub fn bump(stats: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = stats.get_ptr_mut(index) {
        // SAFETY: the pointer comes from a successful lookup of this CPU's slot.
        unsafe { *slot += 1 };
    }
}
