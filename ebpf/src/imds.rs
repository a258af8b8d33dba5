//! The IMDS decision every hook shares. The destination's first byte is checked against
//! the prefilter bitmap, and only a possible match is looked up in the blocked tries (what
//! every connection, send and packet pays is one array lookup and a bit test); only on a
//! match are the mode, the allowlist and the report rate consulted.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_boot_ns,
    maps::{HashMap, lpm_trie::Key},
};
use nodeward_common::imds::{
    ImdsEvent, ImdsKey, ImdsSeen, MAX_CGROUP_DEPTH, MODE_AUDIT, MODE_ENFORCE, MODE_OFF, Prefilter,
    REPORT_INTERVAL_NS, STAT_ALLOWED, STAT_AUDITED, STAT_BLOCKED, STAT_EVENTS_LOST,
    STAT_SUPPRESSED, VERDICT_AUDITED, VERDICT_BLOCKED,
};

use crate::{
    atomic,
    maps::{
        IMDS_ALLOWED, IMDS_BLOCKED_V4, IMDS_BLOCKED_V6, IMDS_CONFIG, IMDS_EVENTS, IMDS_PREFILTER,
        IMDS_SEEN, IMDS_STATS, bump,
    },
};

/// Return value that lets the call (or packet) proceed.
pub const ALLOW: i32 = 1;
/// Return value that refuses it: the syscall fails with `EPERM`, the packet is dropped.
pub const DENY: i32 = 0;

/// A destination as a hook read it.
pub struct Destination {
    pub family: u32,
    /// Network byte order; IPv4 in the first four bytes.
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub protocol: u32,
    pub hook: u32,
}

/// Where an attempt comes from: the current task (socket calls) or a packet's socket.
pub trait Origin {
    /// cgroup v2 id of the task or of the packet's socket.
    fn cgroup_id(&self) -> u64;
    /// The id of the ancestor at `level` (0 is the root); 0 past the cgroup's own level.
    fn ancestor_cgroup_id(&self, level: i32) -> u64;
    /// Fills `pid`, `uid`, `comm` and `ifindex`, as far as the origin knows them.
    fn describe(&self, event: &mut ImdsEvent);

    /// Whether the origin's cgroup or one of its ancestors is an allowed pod's cgroup. The
    /// walk starts below the root; a pod's containers inherit its allowance because the
    /// pod cgroup is their ancestor, and nothing inside a pod can change which cgroup it is
    /// in.
    #[inline(always)]
    fn is_allowed(&self) -> bool {
        self.has_ancestor_in(&IMDS_ALLOWED)
    }

    /// Whether the origin's cgroup or one of its ancestors (from below the root) is a key
    /// of `cgroups`.
    #[inline(always)]
    fn has_ancestor_in(&self, cgroups: &HashMap<u64, u32>) -> bool {
        let mut level = 1;
        while level < MAX_CGROUP_DEPTH {
            let id = self.ancestor_cgroup_id(level);
            if id == 0 {
                return false;
            }
            if cgroups.get_ptr(id).is_some() {
                return true;
            }
            level += 1;
        }
        false
    }
}

/// Whether a blocked prefix may cover an address whose first byte is `first`: false only
/// when the prefilter is written and says no.
#[inline(always)]
pub fn may_be_blocked(v6: bool, first: u8) -> bool {
    IMDS_PREFILTER
        .get(0)
        .is_none_or(|p| p.valid == 0 || Prefilter::covers(if v6 { &p.v6 } else { &p.v4 }, first))
}

#[inline(always)]
pub fn is_blocked_v4(addr: [u8; 4]) -> bool {
    may_be_blocked(false, addr[0]) && IMDS_BLOCKED_V4.get(Key::new(32, addr)).is_some()
}

#[inline(always)]
pub fn is_blocked_v6(addr: [u8; 16]) -> bool {
    may_be_blocked(true, addr[0]) && IMDS_BLOCKED_V6.get(Key::new(128, addr)).is_some()
}

/// The configured `MODE_*`. A missing entry cannot happen for an array map, but if it
/// did, enforcing is the safe reading (`MODE_ENFORCE` is zero for the same reason).
#[inline(always)]
pub fn mode() -> u32 {
    IMDS_CONFIG.get(0).map_or(MODE_ENFORCE, |c| c.mode)
}

/// Decides an attempt whose destination matched a blocked prefix.
#[inline(always)]
pub fn on_blocked(origin: &impl Origin, dst: &Destination) -> i32 {
    let mode = mode();
    if mode == MODE_OFF {
        return ALLOW;
    }
    if origin.is_allowed() {
        bump(&IMDS_STATS, STAT_ALLOWED);
        return ALLOW;
    }
    let (verdict, stat, ret) = if mode == MODE_AUDIT {
        (VERDICT_AUDITED, STAT_AUDITED, ALLOW)
    } else {
        (VERDICT_BLOCKED, STAT_BLOCKED, DENY)
    };
    bump(&IMDS_STATS, stat);
    report(origin, dst, verdict);
    ret
}

/// Counts the attempt and reports it unless this (cgroup, destination, verdict) was
/// reported less than `REPORT_INTERVAL_NS` ago: the first attempt is reported at once and
/// a loop of attempts costs one report a second. Reports carry the running total, from
/// which the agent derives how many attempts each stands for (and it sweeps the map for
/// totals that no report carried, such as the tail of a burst).
#[inline(always)]
fn report(origin: &impl Origin, dst: &Destination, verdict: u32) {
    let now = bpf_ktime_get_boot_ns_safe();
    let key = ImdsKey {
        cgroup_id: origin.cgroup_id(),
        addr: dst.addr,
        family: dst.family,
        protocol: dst.protocol,
        port: u32::from(dst.port),
        verdict,
    };
    let total = if let Some(seen) = IMDS_SEEN.get_ptr_mut(key) {
        // SAFETY: a pointer into a map value returned by the lookup above; `total` is only
        // ever added to atomically, and a race on `last_report_ns` costs at most one
        // extra report.
        unsafe {
            atomic::add(&raw mut (*seen).total, 1);
            (*seen).last_seen_ns = now;
            if now.wrapping_sub((*seen).last_report_ns) < REPORT_INTERVAL_NS {
                bump(&IMDS_STATS, STAT_SUPPRESSED);
                return;
            }
            (*seen).last_report_ns = now;
            (*seen).total
        }
    } else {
        // Another CPU may have inserted the key meanwhile; then its entry stands and this
        // attempt is reported with a total of 1, which the agent reads as a restart.
        let _ = IMDS_SEEN.insert(
            key,
            ImdsSeen {
                last_report_ns: now,
                last_seen_ns: now,
                total: 1,
            },
            u64::from(BPF_NOEXIST),
        );
        1
    };
    let Some(mut entry) = IMDS_EVENTS.reserve::<ImdsEvent>(0) else {
        // The attempt stays counted in IMDS_SEEN, where the agent's sweep finds it.
        bump(&IMDS_STATS, STAT_EVENTS_LOST);
        return;
    };
    let mut event = ImdsEvent {
        cgroup_id: key.cgroup_id,
        boot_ns: now,
        total,
        pid: 0,
        uid: 0,
        family: dst.family,
        protocol: dst.protocol,
        port: u32::from(dst.port),
        verdict,
        hook: dst.hook,
        ifindex: 0,
        addr: dst.addr,
        comm: [0; 16],
    };
    origin.describe(&mut event);
    entry.write(event);
    entry.submit(0);
}

#[inline(always)]
fn bpf_ktime_get_boot_ns_safe() -> u64 {
    // SAFETY: a helper without arguments, allowed in every program type used here.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// `bpf_sock_addr::user_port` holds the port in network byte order in its low 16 bits.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the upper 16 bits are always zero"
)]
pub fn port_from_ctx(user_port: u32) -> u16 {
    u16::from_be(user_port as u16)
}

/// The low half of a helper result that packs two 32-bit values (uid and gid).
#[inline(always)]
#[expect(clippy::cast_possible_truncation, reason = "truncation is the point")]
pub fn low_u32(packed: u64) -> u32 {
    packed as u32
}
