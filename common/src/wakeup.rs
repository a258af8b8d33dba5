//! When the sensors' ring buffers wake the agent. Waking the reader for every record costs
//! a wake-up in the kernel and a round of scheduling in the agent per event, which is
//! most of what an exec storm costs a consumer. So a record wakes the reader only when
//! this CPU has not woken it for [`INTERVAL_NS`] (a lone event is delivered at once) or
//! when the ring holds more than its threshold; records between wake-ups wait for the
//! next one or for the agent's periodic drain ([`DRAIN_INTERVAL_MS`]).

/// Per-CPU array of the last wake-up time (`bpf_ktime_get_boot_ns`), one slot per ring.
pub const MAP_LAST_WAKEUP: &str = "RING_LAST_WAKEUP";
/// Slot of the exec sensor's ring.
pub const RING_EXEC: u32 = 0;
/// Slot of the egress sensor's ring.
pub const RING_EGRESS: u32 = 1;
/// Number of slots.
pub const RING_COUNT: u32 = 2;

/// At most one wake-up per CPU and ring in this interval, unless the ring fills up.
pub const INTERVAL_NS: u64 = 20_000_000;
/// How often the agent reads a ring without being woken: the longest a record can wait.
pub const DRAIN_INTERVAL_MS: u64 = 100;
/// Pending bytes past which a record always wakes the reader: an eighth of the ring,
/// so a burst between drains cannot fill it.
pub const fn threshold(ring_bytes: u32) -> u64 {
    ring_bytes as u64 / 8
}
