//! Maps shared by the programs. Names must match the `MAP_*` constants in
//! `nodeward_common`, which is how the agent finds them. The IMDS maps are pinned by name
//! under the agent's pin path, so a restarted agent adopts the same state and enforcement
//! never depends on the agent process being alive; the sensors' maps live with the agent.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use nodeward_common::exec::{
    EVENTS_RING_BYTES as EXEC_RING_BYTES, ExecConfig, STAT_COUNT as EXEC_STAT_COUNT,
};
use nodeward_common::imds::{
    EVENTS_RING_BYTES, ImdsConfig, ImdsKey, ImdsSeen, MAX_ALLOWED_PODS, MAX_BLOCKED_PREFIXES,
    MAX_PACKET_GUARDS, MAX_POD_LINKS, MAX_SEEN, PACKET_RING_BYTES, Prefilter, STAT_COUNT,
    UplinkConfig,
};

#[map]
pub static IMDS_BLOCKED_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_BLOCKED_PREFIXES, 0);

#[map]
pub static IMDS_BLOCKED_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_BLOCKED_PREFIXES, 0);

#[map]
pub static IMDS_CONFIG: Array<ImdsConfig> = Array::pinned(1, 0);

#[map]
pub static IMDS_PREFILTER: Array<Prefilter> = Array::pinned(1, 0);

#[map]
pub static IMDS_ALLOWED: HashMap<u64, u32> = HashMap::pinned(MAX_ALLOWED_PODS, 0);

#[map]
pub static IMDS_SEEN: LruHashMap<ImdsKey, ImdsSeen> = LruHashMap::pinned(MAX_SEEN, 0);

/// Written by the agent only; declared here so it is created and pinned with the rest.
#[map]
pub static IMDS_REPORTED: LruHashMap<ImdsKey, u64> = LruHashMap::pinned(MAX_SEEN, 0);

#[map]
pub static IMDS_EVENTS: RingBuf = RingBuf::pinned(EVENTS_RING_BYTES, 0);

#[map]
pub static IMDS_STATS: PerCpuArray<u64> = PerCpuArray::pinned(STAT_COUNT, 0);

#[map]
pub static IMDS_UPLINK: Array<UplinkConfig> = Array::pinned(1, 0);

#[map]
pub static IMDS_POD_LINKS: HashMap<u32, u64> = HashMap::pinned(MAX_POD_LINKS, 0);

#[map]
pub static IMDS_PKT_GUARDS: HashMap<u64, u32> = HashMap::pinned(MAX_PACKET_GUARDS, 0);

#[map]
pub static IMDS_PKT_WANTED: HashMap<u64, u32> = HashMap::pinned(MAX_PACKET_GUARDS, 0);

#[map]
pub static IMDS_PKT_RING: RingBuf = RingBuf::pinned(PACKET_RING_BYTES, 0);

#[map]
pub static EXEC_CONFIG: Array<ExecConfig> = Array::with_max_entries(1, 0);

#[map]
pub static EXEC_EVENTS: RingBuf = RingBuf::with_byte_size(EXEC_RING_BYTES, 0);

#[map]
pub static EXEC_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EXEC_STAT_COUNT, 0);

/// Adds one to a per-CPU counter. Per-CPU slots need no atomics: a program does not
/// migrate between CPUs while it runs.
#[inline(always)]
pub fn bump(stats: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = stats.get_ptr_mut(index) {
        // SAFETY: the pointer comes from a successful lookup of this CPU's slot.
        unsafe { *slot += 1 };
    }
}
