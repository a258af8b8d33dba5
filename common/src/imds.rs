//! Instance metadata service (IMDS) enforcement: maps shared by the programs that guard
//! every way out of a pod (`cgroup/connect4`, `connect6`, `sendmsg4`, `sendmsg6` and
//! `cgroup_skb/egress`) and the agent that fills and drains them. All maps are pinned by
//! name, so enforcement outlives the agent process.

use crate::TASK_COMM_LEN;

/// LPM trie of blocked IPv4 prefixes; key data is the address in network byte order.
pub const MAP_BLOCKED_V4: &str = "IMDS_BLOCKED_V4";
/// LPM trie of blocked IPv6 prefixes; key data is the address in network byte order.
pub const MAP_BLOCKED_V6: &str = "IMDS_BLOCKED_V6";
/// One-entry array holding [`ImdsConfig`].
pub const MAP_CONFIG: &str = "IMDS_CONFIG";
/// Hash of allowed pod cgroup ids (value unused); a task whose cgroup or any ancestor is
/// in it may reach the blocked prefixes.
pub const MAP_ALLOWED: &str = "IMDS_ALLOWED";
/// LRU hash of [`ImdsKey`] → [`ImdsSeen`]: counts attempts and limits reports per
/// container and destination.
pub const MAP_SEEN: &str = "IMDS_SEEN";
/// LRU hash of [`ImdsKey`] → `u64`: the attempt total the agent has reported. Written
/// only by the agent (the programs declare it so it is created and pinned with the rest).
pub const MAP_REPORTED: &str = "IMDS_REPORTED";
/// Ring buffer of [`ImdsEvent`]s.
pub const MAP_EVENTS: &str = "IMDS_EVENTS";
/// Per-CPU counters, indexed by the `STAT_*` constants.
pub const MAP_STATS: &str = "IMDS_STATS";

/// Program names, as the agent finds them in the object file.
pub const PROG_CONNECT4: &str = "imds_connect4";
pub const PROG_CONNECT6: &str = "imds_connect6";
pub const PROG_SENDMSG4: &str = "imds_sendmsg4";
pub const PROG_SENDMSG6: &str = "imds_sendmsg6";
pub const PROG_EGRESS: &str = "imds_egress";

/// Most prefixes one trie holds; the agent rejects a configuration with more.
pub const MAX_BLOCKED_PREFIXES: u32 = 64;
/// Most allowed pods per node.
pub const MAX_ALLOWED_PODS: u32 = 1024;
/// Distinct (container, destination) pairs whose report rate is tracked.
pub const MAX_SEEN: u32 = 16384;
/// Ring buffer size in bytes (a power of two and a multiple of the page size).
pub const EVENTS_RING_BYTES: u32 = 256 * 1024;
/// Cgroup levels walked (from the root) when looking for an allowed ancestor.
pub const MAX_CGROUP_DEPTH: i32 = 16;
/// At most one report per key in this interval; attempts in between are counted, and the
/// agent finds them by their total (the next report, or its periodic sweep).
pub const REPORT_INTERVAL_NS: u64 = 1_000_000_000;

/// Deny and report. Zero on purpose: a config map that was never written (or was
/// zeroed) leaves pods blocked rather than open.
pub const MODE_ENFORCE: u32 = 0;
/// Allow, but report what would have been blocked.
pub const MODE_AUDIT: u32 = 1;
/// Neither block nor report.
pub const MODE_OFF: u32 = 2;

/// The attempt was refused (`EPERM`, or the packet dropped).
pub const VERDICT_BLOCKED: u32 = 1;
/// The attempt went through because the mode is audit.
pub const VERDICT_AUDITED: u32 = 2;

/// Which hook saw the attempt.
pub const HOOK_CONNECT4: u32 = 1;
pub const HOOK_CONNECT6: u32 = 2;
pub const HOOK_SENDMSG4: u32 = 3;
pub const HOOK_SENDMSG6: u32 = 4;
/// A packet on its way out from a raw or ICMP socket.
pub const HOOK_EGRESS: u32 = 5;
/// Not a hook: attempts the agent found counted but not yet reported.
pub const HOOK_NONE: u32 = 0;

/// Index in [`MAP_STATS`]: events the ring buffer had no room for.
pub const STAT_EVENTS_LOST: u32 = 0;
/// Index in [`MAP_STATS`]: attempts refused.
pub const STAT_BLOCKED: u32 = 1;
/// Index in [`MAP_STATS`]: attempts let through by audit mode.
pub const STAT_AUDITED: u32 = 2;
/// Index in [`MAP_STATS`]: attempts let through by the allowlist.
pub const STAT_ALLOWED: u32 = 3;
/// Index in [`MAP_STATS`]: attempts not reported on their own because of the rate limit.
pub const STAT_SUPPRESSED: u32 = 4;
/// Number of entries in [`MAP_STATS`].
pub const STAT_COUNT: u32 = 5;

/// Runtime settings the programs read on every blocked-prefix match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImdsConfig {
    /// One of `MODE_*`.
    pub mode: u32,
    /// Always zero; keeps the struct free of implicit padding.
    pub reserved: u32,
}

/// What the report rate limit is keyed by: one container and one destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ImdsKey {
    pub cgroup_id: u64,
    /// Network byte order; IPv4 uses the first four bytes.
    pub addr: [u8; 16],
    pub family: u32,
    pub protocol: u32,
    pub port: u32,
    pub verdict: u32,
}

/// Attempt bookkeeping for one [`ImdsKey`]. The programs only ever add to `total` (so
/// concurrent CPUs need no lock and the agent, which only reads this map, never races
/// them); what has been reported is the agent's business, in [`MAP_REPORTED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImdsSeen {
    /// `bpf_ktime_get_boot_ns` of the last report.
    pub last_report_ns: u64,
    /// `bpf_ktime_get_boot_ns` of the last attempt.
    pub last_seen_ns: u64,
    /// Attempts since the entry was created.
    pub total: u64,
}

/// One report of attempts to reach a blocked prefix from below the pod cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ImdsEvent {
    /// cgroup v2 id of the task (the inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// `bpf_ktime_get_boot_ns` when the attempt was seen.
    pub boot_ns: u64,
    /// Attempts for this key so far ([`ImdsSeen::total`] after this one).
    pub total: u64,
    /// Thread group id (the user-space pid); 0 for packets (the egress hook runs where no
    /// process context can be trusted).
    pub pid: u32,
    /// The task's uid, or the socket owner's for packets.
    pub uid: u32,
    /// `AF_INET` or `AF_INET6`: how `addr` is to be read.
    pub family: u32,
    /// `IPPROTO_*` of the socket or packet.
    pub protocol: u32,
    /// Destination port, host byte order; 0 when the protocol has none.
    pub port: u32,
    /// One of `VERDICT_*`.
    pub verdict: u32,
    /// One of `HOOK_*`.
    pub hook: u32,
    /// Always zero; keeps the struct free of implicit padding.
    pub reserved: u32,
    /// Destination address in network byte order; IPv4 uses the first four bytes.
    pub addr: [u8; 16],
    /// `task_struct::comm`, NUL padded; empty for packets.
    pub comm: [u8; TASK_COMM_LEN],
}

const _: () = assert!(size_of::<ImdsConfig>() == 8);
const _: () = assert!(size_of::<ImdsKey>() == 40);
const _: () = assert!(size_of::<ImdsSeen>() == 24);
const _: () = assert!(size_of::<ImdsEvent>() == 88);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all four types are `#[repr(C)]`, contain only integers and byte arrays,
    // and have no implicit padding (the size assertions above would fail if they did).
    unsafe impl aya::Pod for super::ImdsConfig {}
    unsafe impl aya::Pod for super::ImdsKey {}
    unsafe impl aya::Pod for super::ImdsSeen {}
    unsafe impl aya::Pod for super::ImdsEvent {}
}
