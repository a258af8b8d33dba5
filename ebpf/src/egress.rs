//! Recording where pods connect and send (the egress sensor), from inside the `sock_addr`
//! programs, after the IMDS decision allowed the call. The common case (the same
//! destination again, on the same CPU, within the window) costs one array lookup and a
//! compare.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        bpf_ktime_get_coarse_ns,
    },
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use nodeward_common::{
    egress::{
        EVENTS_RING_BYTES, EgressConfig, EgressEvent, EgressKey, EgressLast, EgressSeen,
        LAST_SLOTS, MAX_SEEN, STAT_COUNT, STAT_EVENTS_LOST, STAT_REPORTED, WINDOW_NS,
    },
    wakeup::{RING_EGRESS, threshold},
};

use crate::{
    atomic,
    imds::{Destination, low_u32},
    maps::bump,
    wakeup,
};

#[map]
static EGRESS_CONFIG: Array<EgressConfig> = Array::with_max_entries(1, 0);

#[map]
static EGRESS_SEEN: LruHashMap<EgressKey, EgressSeen> = LruHashMap::with_max_entries(MAX_SEEN, 0);

#[map]
static EGRESS_LAST: PerCpuArray<EgressLast> = PerCpuArray::with_max_entries(LAST_SLOTS, 0);

#[map]
static EGRESS_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map]
static EGRESS_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Records one allowed connect or send to `dst` from a pod.
#[inline(always)]
pub fn record(dst: &Destination) {
    if EGRESS_CONFIG.get(0).is_none_or(|c| c.enabled == 0) {
        return;
    }
    record_enabled(dst);
}

/// Records a connect or send by a node process; tasks below the pod cgroup are the pod
/// programs' to record (both run for them, the pods' programs being attached below).
#[inline(always)]
pub fn record_from_node(dst: &Destination) {
    let Some(config) = EGRESS_CONFIG.get(0) else {
        return;
    };
    if config.enabled == 0 {
        return;
    }
    // SAFETY: the helper accepts any level and returns 0 past the task's own.
    let ancestor = unsafe {
        bpf_get_current_ancestor_cgroup_id(i32::try_from(config.pod_cgroup_level).unwrap_or(0))
    };
    if ancestor == config.pod_cgroup_id {
        return;
    }
    record_enabled(dst);
}

#[inline(always)]
fn record_enabled(dst: &Destination) {
    // SAFETY: helpers without arguments, allowed in cgroup sock_addr programs. The coarse
    // clock serves the window; only a report reads the precise one.
    let (cgroup_id, now) = unsafe { (bpf_get_current_cgroup_id(), bpf_ktime_get_coarse_ns()) };
    let key = EgressKey {
        cgroup_id,
        addr: dst.addr,
        family: dst.family,
        protocol: dst.protocol,
        port: u32::from(dst.port),
        reserved: 0,
    };
    let Some(last) = EGRESS_LAST.get_ptr_mut(slot(&key)) else {
        return;
    };
    // SAFETY: `last` points at this CPU's slot; nothing else runs on this CPU meanwhile.
    unsafe {
        if (*last).key == key && now.wrapping_sub((*last).last_report_ns) < WINDOW_NS {
            (*last).pending += 1;
            return;
        }
        flush(&mut *last);
    }
    let total = if let Some(seen) = EGRESS_SEEN.get_ptr_mut(key) {
        // SAFETY: a pointer into the map value from the lookup; `total` only ever grows
        // atomically, and a race on `last_report_ns` costs at most one extra report.
        unsafe {
            atomic::add(&raw mut (*seen).total, 1);
            if now.wrapping_sub((*seen).last_report_ns) < WINDOW_NS {
                remember(last, key, (*seen).last_report_ns);
                return;
            }
            (*seen).last_report_ns = now;
            (*seen).total
        }
    } else {
        let _ = EGRESS_SEEN.insert(
            key,
            EgressSeen {
                last_report_ns: now,
                total: 1,
            },
            u64::from(BPF_NOEXIST),
        );
        1
    };
    remember(last, key, now);
    report(&key, dst, total);
}

/// The per-CPU cache slot of `key`: a multiplicative hash of its fields, top bits.
#[inline(always)]
fn slot(key: &EgressKey) -> u32 {
    let mut low = [0u8; 8];
    let mut high = [0u8; 8];
    low.copy_from_slice(&key.addr[..8]);
    high.copy_from_slice(&key.addr[8..]);
    let mixed = key.cgroup_id
        ^ u64::from_ne_bytes(low)
        ^ u64::from_ne_bytes(high).rotate_left(17)
        ^ (u64::from(key.port) << 32 | u64::from(key.protocol));
    let hashed = mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // The top bits mix best.
    u32::try_from(hashed >> (64 - LAST_SLOTS.trailing_zeros())).unwrap_or(0) & (LAST_SLOTS - 1)
}

/// Adds the attempts counted on this CPU to the shared total.
#[inline(always)]
fn flush(last: &mut EgressLast) {
    if last.pending == 0 {
        return;
    }
    if let Some(seen) = EGRESS_SEEN.get_ptr_mut(last.key) {
        // SAFETY: a pointer into the map value from the lookup.
        unsafe { atomic::add(&raw mut (*seen).total, last.pending) };
    }
    last.pending = 0;
}

#[inline(always)]
fn remember(last: *mut EgressLast, key: EgressKey, reported_ns: u64) {
    // SAFETY: `last` points at this CPU's slot.
    unsafe {
        *last = EgressLast {
            key,
            last_report_ns: reported_ns,
            pending: 0,
        }
    };
}

#[inline(always)]
fn report(key: &EgressKey, dst: &Destination, total: u64) {
    let Some(mut entry) = EGRESS_EVENTS.reserve::<EgressEvent>(0) else {
        bump(&EGRESS_STATS, STAT_EVENTS_LOST);
        return;
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    entry.write(EgressEvent {
        cgroup_id: key.cgroup_id,
        boot_ns: now,
        total,
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: low_u32(bpf_get_current_uid_gid()),
        family: dst.family,
        protocol: dst.protocol,
        port: u32::from(dst.port),
        reserved: 0,
        addr: dst.addr,
        comm: bpf_get_current_comm().unwrap_or_default(),
    });
    entry.submit(wakeup::flags(
        &EGRESS_EVENTS,
        RING_EGRESS,
        threshold(EVENTS_RING_BYTES),
        now,
    ));
    bump(&EGRESS_STATS, STAT_REPORTED);
}
