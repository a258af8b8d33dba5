//! Egress sensor: every outbound connect and UDP destination from a pod, recorded by the
//! same `cgroup/connect*` and `sendmsg*` programs that enforce IMDS (one hook per call),
//! deduplicated in the kernel per (container, destination, port, protocol) over a window.
//! With `sensors.hostProcesses`, record-only programs on the node's cgroup add the node
//! processes outside the pods.

use crate::TASK_COMM_LEN;

/// One-entry array holding [`EgressConfig`].
pub const MAP_CONFIG: &str = "EGRESS_CONFIG";
/// LRU hash of [`EgressKey`] → [`EgressSeen`].
pub const MAP_SEEN: &str = "EGRESS_SEEN";
/// Per-CPU cache of the last keys seen on that CPU, [`LAST_SLOTS`] of them.
pub const MAP_LAST: &str = "EGRESS_LAST";
/// Slots of the per-CPU cache, chosen by a hash of the key: a process that alternates
/// between a few destinations (a connect here, a send there) keeps hitting its slots
/// instead of evicting its one entry at every call. A power of two.
pub const LAST_SLOTS: u32 = 8;
/// Ring buffer of [`EgressEvent`]s.
pub const MAP_EVENTS: &str = "EGRESS_EVENTS";
/// Per-CPU counters, indexed by the `STAT_*` constants.
pub const MAP_STATS: &str = "EGRESS_STATS";

/// Programs that record node processes' destinations (never refuse anything).
pub const PROG_HOST_CONNECT4: &str = "host_connect4";
pub const PROG_HOST_CONNECT6: &str = "host_connect6";
pub const PROG_HOST_SENDMSG4: &str = "host_sendmsg4";
pub const PROG_HOST_SENDMSG6: &str = "host_sendmsg6";

/// The sensor's settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressConfig {
    /// Non-zero when the sensor is on.
    pub enabled: u32,
    /// Depth of the pod cgroup below the cgroup2 root; the node programs leave tasks whose
    /// ancestor at this depth is the pod cgroup to the pod programs.
    pub pod_cgroup_level: u32,
    pub pod_cgroup_id: u64,
}

/// Destinations tracked at once (least recently used are forgotten).
pub const MAX_SEEN: u32 = 65_536;
pub const EVENTS_RING_BYTES: u32 = 1024 * 1024;
/// A (container, destination) is reported at most once per window; the attempts between
/// reports are counted and carried by the next one.
pub const WINDOW_NS: u64 = 60_000_000_000;

pub const STAT_EVENTS_LOST: u32 = 0;
pub const STAT_REPORTED: u32 = 1;
pub const STAT_COUNT: u32 = 2;

/// What deduplication is keyed by.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EgressKey {
    pub cgroup_id: u64,
    /// Network byte order; IPv4 in the first four bytes.
    pub addr: [u8; 16],
    pub family: u32,
    pub protocol: u32,
    pub port: u32,
    /// Always zero; keeps the struct free of implicit padding.
    pub reserved: u32,
}

/// Attempt bookkeeping for one key; `total` is only ever added to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressSeen {
    /// `bpf_ktime_get_coarse_ns` (monotonic, jiffy resolution): enough for a window of a
    /// minute, and cheaper per send than the precise boot clock.
    pub last_report_ns: u64,
    pub total: u64,
}

/// The per-CPU cache: a burst to one destination is counted here without touching the
/// shared map, and folded into it when the CPU moves on to another destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressLast {
    pub key: EgressKey,
    /// As in [`EgressSeen`].
    pub last_report_ns: u64,
    /// Attempts counted here and not yet added to the shared map.
    pub pending: u64,
}

/// One report: a new destination for a container, or an old one again after the window.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EgressEvent {
    pub cgroup_id: u64,
    pub boot_ns: u64,
    /// Attempts for this key so far ([`EgressSeen::total`]).
    pub total: u64,
    pub pid: u32,
    pub uid: u32,
    pub family: u32,
    pub protocol: u32,
    pub port: u32,
    pub reserved: u32,
    pub addr: [u8; 16],
    pub comm: [u8; TASK_COMM_LEN],
}

const _: () = assert!(size_of::<EgressConfig>() == 16);
const _: () = assert!(size_of::<EgressKey>() == 40);
const _: () = assert!(size_of::<EgressSeen>() == 16);
const _: () = assert!(size_of::<EgressLast>() == 56);
const _: () = assert!(size_of::<EgressEvent>() == 80);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all five types are `#[repr(C)]`, contain only integers and byte arrays, and
    // have no implicit padding (the size assertions above would fail if they did).
    unsafe impl aya::Pod for super::EgressConfig {}
    unsafe impl aya::Pod for super::EgressKey {}
    unsafe impl aya::Pod for super::EgressSeen {}
    unsafe impl aya::Pod for super::EgressLast {}
    unsafe impl aya::Pod for super::EgressEvent {}
}
