//! Instance metadata service (IMDS) enforcement: maps shared by the `cgroup/connect4` and
//! `cgroup/connect6` programs and the agent that fills and drains them.

use crate::TASK_COMM_LEN;

/// LPM trie of blocked IPv4 prefixes; key data is the address in network byte order.
pub const MAP_BLOCKED_V4: &str = "IMDS_BLOCKED_V4";
/// LPM trie of blocked IPv6 prefixes; key data is the address in network byte order.
pub const MAP_BLOCKED_V6: &str = "IMDS_BLOCKED_V6";
/// One-entry array holding [`ImdsConfig`].
pub const MAP_CONFIG: &str = "IMDS_CONFIG";
/// Ring buffer of [`ImdsEvent`]s.
pub const MAP_EVENTS: &str = "IMDS_EVENTS";
/// Per-CPU counters, indexed by the `STAT_*` constants.
pub const MAP_STATS: &str = "IMDS_STATS";

/// Program names, as the agent finds them in the object file.
pub const PROG_CONNECT4: &str = "imds_connect4";
pub const PROG_CONNECT6: &str = "imds_connect6";

/// Most prefixes one trie holds; the agent rejects a configuration with more.
pub const MAX_BLOCKED_PREFIXES: u32 = 64;
/// Ring buffer size in bytes (a power of two and a multiple of the page size).
pub const EVENTS_RING_BYTES: u32 = 256 * 1024;

/// Deny and report. Zero on purpose: a config map that was never written (or was
/// zeroed) leaves pods blocked rather than open.
pub const MODE_ENFORCE: u32 = 0;
/// Allow, but report what would have been blocked.
pub const MODE_AUDIT: u32 = 1;
/// Neither block nor report.
pub const MODE_OFF: u32 = 2;

/// The connection was refused with `EPERM`.
pub const VERDICT_BLOCKED: u32 = 1;
/// The connection went through because the mode is audit.
pub const VERDICT_AUDITED: u32 = 2;

/// Which hook saw the attempt.
pub const HOOK_CONNECT4: u32 = 1;
pub const HOOK_CONNECT6: u32 = 2;

/// Index in [`MAP_STATS`]: events the ring buffer had no room for.
pub const STAT_EVENTS_LOST: u32 = 0;
/// Index in [`MAP_STATS`]: attempts denied.
pub const STAT_BLOCKED: u32 = 1;
/// Index in [`MAP_STATS`]: attempts allowed in audit mode.
pub const STAT_AUDITED: u32 = 2;
/// Number of entries in [`MAP_STATS`].
pub const STAT_COUNT: u32 = 3;

/// Runtime settings the programs read on every blocked-prefix match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImdsConfig {
    /// One of `MODE_*`.
    pub mode: u32,
    /// Always zero; keeps the struct free of implicit padding.
    pub reserved: u32,
}

/// One attempt to reach a blocked prefix from below the pod cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ImdsEvent {
    /// cgroup v2 id of the task (the inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// `bpf_ktime_get_boot_ns` when the attempt was seen.
    pub boot_ns: u64,
    /// Thread group id (the user-space pid).
    pub pid: u32,
    pub uid: u32,
    /// `AF_INET` or `AF_INET6`: how `addr` is to be read.
    pub family: u32,
    /// `IPPROTO_*` of the socket.
    pub protocol: u32,
    /// Destination port, host byte order.
    pub port: u32,
    /// One of `VERDICT_*`.
    pub verdict: u32,
    /// One of `HOOK_*`.
    pub hook: u32,
    /// Always zero; keeps the struct free of implicit padding.
    pub reserved: u32,
    /// Destination address in network byte order; IPv4 uses the first four bytes.
    pub addr: [u8; 16],
    /// `task_struct::comm`, NUL padded.
    pub comm: [u8; TASK_COMM_LEN],
}

const _: () = assert!(size_of::<ImdsConfig>() == 8);
const _: () = assert!(size_of::<ImdsEvent>() == 80);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both types are `#[repr(C)]`, contain only integers and byte arrays, and have
    // no implicit padding (the size assertions above would fail if they did).
    unsafe impl aya::Pod for super::ImdsConfig {}
    unsafe impl aya::Pod for super::ImdsEvent {}
}
