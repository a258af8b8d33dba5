//! Which cgroups need the packet hook (`imds_egress`). Sockets that no connect or sendmsg
//! hook judges (raw, ICMP, UDP-Lite) are rare in pods, while the packet hook costs every
//! packet of every socket in the cgroup it is on; so a pod gets it only once it opens
//! such a socket. This runs once per socket created below the pod cgroup and asks the
//! agent for the hook; until the agent has attached it (milliseconds), the node-side
//! guard (`uplink`) judges the socket's packets as they leave the node.

use aya_ebpf::{bindings::BPF_NOEXIST, programs::SockContext};

use crate::{
    imds::Origin as _,
    maps::{IMDS_PKT_GUARDS, IMDS_PKT_RING, IMDS_PKT_WANTED},
    packet::judged_at_socket_calls,
    sock_addr::Task,
};

/// Asks for the packet hook on the creating task's cgroup, unless the new socket is one
/// the socket hooks judge or a guarded cgroup (one with its own hook) already encloses
/// the task.
#[inline(always)]
pub fn on_create(ctx: &SockContext) {
    // SAFETY: the kernel hands cgroup sock programs a valid bpf_sock.
    let (kind, protocol) = unsafe { ((*ctx.sock).type_, (*ctx.sock).protocol) };
    if judged_at_socket_calls(kind, protocol) || Task.has_ancestor_in(&IMDS_PKT_GUARDS) {
        return;
    }
    // The socket belongs to the creating task's cgroup, whose packets the hook must see.
    let cgroup_id = Task.cgroup_id();
    // One wake-up per cgroup: a loop of new sockets before the agent answers costs one
    // map entry, and the entry stays (pinned) if the agent is not running.
    if IMDS_PKT_WANTED
        .insert(cgroup_id, 0, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        // A full ring only delays the agent to its next periodic look at the map.
        let _ = IMDS_PKT_RING.output::<u64>(cgroup_id, 0);
    }
}
