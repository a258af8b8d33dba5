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
/// One-entry array holding [`Prefilter`].
pub const MAP_PREFILTER: &str = "IMDS_PREFILTER";
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
/// One-entry array holding [`UplinkConfig`].
pub const MAP_UPLINK: &str = "IMDS_UPLINK";
/// Hash of node-side interface index → pod cgroup id: which pod's network namespace a
/// forwarded packet came from (its `ingress_ifindex`). Written by the agent from the pods'
/// addresses and the node's routes.
pub const MAP_POD_LINKS: &str = "IMDS_POD_LINKS";
/// Hash of cgroup ids (value unused) that carry their own [`PROG_EGRESS`] link: the pods
/// that opened a socket only the packet hook can judge.
pub const MAP_PACKET_GUARDS: &str = "IMDS_PKT_GUARDS";
/// Hash of cgroup ids (value unused) where such a socket was opened outside every guarded
/// cgroup: written by [`PROG_SOCK_CREATE`], drained by the agent, which guards them.
pub const MAP_PACKET_WANTED: &str = "IMDS_PKT_WANTED";
/// Ring buffer of `u64` cgroup ids, one per new [`MAP_PACKET_WANTED`] entry: the agent's
/// wake-up, so a guard follows the socket within milliseconds.
pub const MAP_PACKET_RING: &str = "IMDS_PKT_RING";

/// Program names, as the agent finds them in the object file.
pub const PROG_CONNECT4: &str = "imds_connect4";
pub const PROG_CONNECT6: &str = "imds_connect6";
pub const PROG_SENDMSG4: &str = "imds_sendmsg4";
pub const PROG_SENDMSG6: &str = "imds_sendmsg6";
/// `cgroup_skb/egress`, attached per pod (see [`MAP_PACKET_GUARDS`]), never to the whole
/// pod cgroup: every packet of a guarded cgroup pays for it.
pub const PROG_EGRESS: &str = "imds_egress";
/// `cgroup/sock_create` on the pod cgroup: asks for a pod's [`PROG_EGRESS`] link when the
/// pod opens its first raw, ICMP or other socket that no socket call judges.
pub const PROG_SOCK_CREATE: &str = "imds_sock_create";
/// Pin name prefix of the per-cgroup [`PROG_EGRESS`] links; the cgroup id follows.
pub const PACKET_GUARD_PIN_PREFIX: &str = "imds_egress_cg";
/// On the node's interfaces that lead to a blocked prefix (tcx egress): packets no pod
/// hook saw, forwarded from a pod's network namespace or sent by a pod's packet socket.
pub const PROG_UPLINK: &str = "imds_uplink";

/// Most prefixes one trie holds; the agent rejects a configuration with more.
pub const MAX_BLOCKED_PREFIXES: u32 = 64;
/// Most allowed pods per node.
pub const MAX_ALLOWED_PODS: u32 = 1024;
/// Distinct (container, destination) pairs whose report rate is tracked.
pub const MAX_SEEN: u32 = 16384;
/// Ring buffer size in bytes (a power of two and a multiple of the page size).
pub const EVENTS_RING_BYTES: u32 = 256 * 1024;
/// Node interfaces mapped to pods.
pub const MAX_POD_LINKS: u32 = 8192;
/// Cgroups with their own packet hook, and cgroups waiting for one.
pub const MAX_PACKET_GUARDS: u32 = 4096;
/// The wake-up ring's size in bytes (one page: a record is 16 bytes with its header).
pub const PACKET_RING_BYTES: u32 = 4096;
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
/// A packet the node forwards out of a pod's network namespace without any socket hook
/// having seen it (a frame written on a packet socket); `ifindex` says where it entered.
pub const HOOK_FORWARDED: u32 = 6;
/// A packet from a socket in a pod (a hostNetwork pod's packet socket) leaving on a node
/// interface.
pub const HOOK_UPLINK: u32 = 7;
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

/// Which first address bytes the blocked prefixes cover, one bit per byte value, so that
/// nearly every destination (loopback, the cluster's own networks) is told apart from
/// the blocked ones without a trie lookup: the one cost every connect, send and packet
/// pays.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefilter {
    /// Bit `b % 64` of word `b / 64`: some IPv4 prefix covers first byte `b`.
    pub v4: [u64; 4],
    /// The same for IPv6.
    pub v6: [u64; 4],
    /// Zero until the agent wrote the bitmaps; then every destination goes to the tries,
    /// so a zeroed map never opens anything.
    pub valid: u64,
}

impl Prefilter {
    /// Whether a prefix in `bits` may cover an address starting with `first`.
    #[inline]
    #[must_use]
    pub fn covers(bits: &[u64; 4], first: u8) -> bool {
        bits.get(usize::from(first >> 6))
            .is_none_or(|word| word >> (first & 63) & 1 == 1)
    }

    /// Marks every first byte a prefix of `prefix_len` bits starting with `first` covers.
    pub fn mark(bits: &mut [u64; 4], first: u8, prefix_len: u8) {
        let fixed = prefix_len.min(8);
        let span = 1u16 << (8 - fixed);
        let low = u16::from(first) & !(span - 1);
        for byte in low..low + span {
            let byte = u8::try_from(byte).unwrap_or(u8::MAX);
            if let Some(word) = bits.get_mut(usize::from(byte >> 6)) {
                *word |= 1 << (byte & 63);
            }
        }
    }
}

/// What the uplink program needs to tell pod sockets from the node's own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkConfig {
    /// Id of the pod cgroup (`kubepods.slice`); 0 until the agent writes it, which makes
    /// every socket count as the node's.
    pub pod_cgroup_id: u64,
    /// Its level below the cgroup2 root (the root is 0).
    pub pod_cgroup_level: u32,
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
    /// [`HOOK_FORWARDED`]: the node interface the packet entered on; 0 otherwise.
    pub ifindex: u32,
    /// Destination address in network byte order; IPv4 uses the first four bytes.
    pub addr: [u8; 16],
    /// `task_struct::comm`, NUL padded; empty for packets.
    pub comm: [u8; TASK_COMM_LEN],
}

const _: () = assert!(size_of::<ImdsConfig>() == 8);
const _: () = assert!(size_of::<ImdsKey>() == 40);
const _: () = assert!(size_of::<ImdsSeen>() == 24);
const _: () = assert!(size_of::<ImdsEvent>() == 88);
const _: () = assert!(size_of::<UplinkConfig>() == 16);
const _: () = assert!(size_of::<Prefilter>() == 72);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all six types are `#[repr(C)]`, contain only integers and byte arrays,
    // and have no implicit padding (the size assertions above would fail if they did).
    unsafe impl aya::Pod for super::ImdsConfig {}
    unsafe impl aya::Pod for super::ImdsKey {}
    unsafe impl aya::Pod for super::ImdsSeen {}
    unsafe impl aya::Pod for super::ImdsEvent {}
    unsafe impl aya::Pod for super::UplinkConfig {}
    unsafe impl aya::Pod for super::Prefilter {}
}

#[cfg(test)]
mod tests {
    use super::Prefilter;

    #[test]
    fn a_host_prefix_marks_its_first_byte_only() {
        let mut bits = [0; 4];
        Prefilter::mark(&mut bits, 169, 32);
        assert!(Prefilter::covers(&bits, 169));
        assert!(!Prefilter::covers(&bits, 168) && !Prefilter::covers(&bits, 127));
        assert_eq!(bits.iter().map(|w| w.count_ones()).sum::<u32>(), 1);
    }

    #[test]
    fn a_short_prefix_marks_every_first_byte_it_covers() {
        let mut bits = [0; 4];
        Prefilter::mark(&mut bits, 0xfd, 7);
        assert!(Prefilter::covers(&bits, 0xfc) && Prefilter::covers(&bits, 0xfd));
        assert!(!Prefilter::covers(&bits, 0xfe));
        let mut all = [0; 4];
        Prefilter::mark(&mut all, 10, 0);
        assert_eq!(all, [u64::MAX; 4]);
    }
}
