use core::ptr::addr_of_mut;

use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_buf,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use nodeward_common::{
    exec::{
        CONFIG_HOST_PROCESSES, EVENTS_RING_BYTES, ExecConfig, ExecEvent, FLAG_ARGS_TRUNCATED,
        FLAG_FILENAME_TRUNCATED, FLAG_TTY, MAX_ARGS, MAX_FILENAME, STAT_EVENTS_LOST, STAT_REPORTED,
    },
    wakeup::{RING_EXEC, threshold},
};

use crate::{
    imds::low_u32,
    maps::{EXEC_CONFIG, EXEC_EVENTS, EXEC_STATS, bump},
    wakeup,
};

// match-proto: TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
// (include/trace/events/sched.h, sched_process_exec); runs in the new image's context
// after a successful exec, with its mm (and so argv) in place.
#[btf_tracepoint(function = "sched_process_exec")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro fixes the signature"
)]
pub fn exec_sensor(ctx: BtfTracePointContext) -> i32 {
    let Some(config) = EXEC_CONFIG.get(0) else {
        return 0;
    };
    if config.pod_cgroup_id == 0 || !(in_scope(config)) {
        return 0;
    }
    let task: *const u8 = ctx.arg(0);
    let bprm: *const u8 = ctx.arg(2);
    report(config, task, bprm);
    0
}

/// Below the pod cgroup, unless the whole node is watched. One helper call: the task's
/// ancestor at the pod cgroup's depth either is the pod cgroup or it is not.
#[inline(always)]
fn in_scope(config: &ExecConfig) -> bool {
    if config.flags & CONFIG_HOST_PROCESSES != 0 {
        return true;
    }
    // SAFETY: the helper accepts any level and returns 0 past the task's own.
    let ancestor = unsafe {
        bpf_get_current_ancestor_cgroup_id(i32::try_from(config.pod_cgroup_level).unwrap_or(0))
    };
    ancestor == config.pod_cgroup_id
}

/// Reads a kernel pointer field at `offset` bytes into `base`; null on failure.
#[inline(always)]
#[expect(
    clippy::cast_ptr_alignment,
    reason = "bpf_probe_read_kernel copies bytes; alignment does not matter"
)]
fn read_ptr(base: *const u8, offset: u32) -> *const u8 {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one yields an error.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<*const u8>()) }
        .unwrap_or(core::ptr::null())
}

#[inline(always)]
#[expect(
    clippy::cast_ptr_alignment,
    reason = "bpf_probe_read_kernel copies bytes; alignment does not matter"
)]
fn report(config: &ExecConfig, task: *const u8, bprm: *const u8) {
    // The event (1.3 KiB) is far larger than the 512-byte stack, so it is filled in place
    // in the ring buffer.
    let Some(mut entry) = EXEC_EVENTS.reserve::<ExecEvent>(0) else {
        bump(&EXEC_STATS, STAT_EVENTS_LOST);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let mut flags = 0;

    let parent = read_ptr(task, config.task_real_parent);
    // SAFETY: as for read_ptr; the tgid is a plain 32-bit field.
    let ppid = unsafe {
        bpf_probe_read_kernel(parent.wrapping_add(config.task_tgid as usize).cast::<u32>())
    }
    .unwrap_or(0);
    let signal = read_ptr(task, config.task_signal);
    if !signal.is_null() && !read_ptr(signal, config.signal_tty).is_null() {
        flags |= FLAG_TTY;
    }

    // SAFETY: `event` points at the reserved, correctly sized record; every field is written
    // through a raw pointer before submit (the argv and path buffers only up to their
    // recorded lengths, which is all user space reads).
    unsafe {
        let filename = addr_of_mut!((*event).filename);
        let name = read_ptr(bprm, config.bprm_filename);
        let filename_len = match bpf_probe_read_kernel_str_bytes(name, &mut *filename) {
            Ok(bytes) => bytes.len(),
            Err(_) => 0,
        };
        if filename_len >= MAX_FILENAME - 1 {
            flags |= FLAG_FILENAME_TRUNCATED;
        }
        let args_len = read_args(config, task, addr_of_mut!((*event).args), &mut flags);

        addr_of_mut!((*event).cgroup_id).write(bpf_get_current_cgroup_id());
        addr_of_mut!((*event).boot_ns).write(now);
        addr_of_mut!((*event).pid).write((pid_tgid >> 32) as u32);
        addr_of_mut!((*event).ppid).write(ppid);
        addr_of_mut!((*event).uid).write(low_u32(uid_gid));
        addr_of_mut!((*event).gid).write((uid_gid >> 32) as u32);
        addr_of_mut!((*event).flags).write(flags);
        addr_of_mut!((*event).args_len).write(args_len);
        addr_of_mut!((*event).filename_len).write(u32::try_from(filename_len).unwrap_or(0));
        addr_of_mut!((*event).reserved).write(0);
        addr_of_mut!((*event).comm).write(bpf_get_current_comm().unwrap_or_default());
    }
    entry.submit(wakeup::flags(
        &EXEC_EVENTS,
        RING_EXEC,
        threshold(EVENTS_RING_BYTES),
        now,
    ));
    bump(&EXEC_STATS, STAT_REPORTED);
}

/// Copies argv (`mm->arg_start..arg_end` of the new image) into `args`; returns the bytes
/// copied.
#[inline(always)]
unsafe fn read_args(
    config: &ExecConfig,
    task: *const u8,
    args: *mut [u8; MAX_ARGS],
    flags: &mut u32,
) -> u32 {
    let mm = read_ptr(task, config.task_mm);
    if mm.is_null() {
        return 0;
    }
    let start = read_ptr(mm, config.mm_arg_start) as usize;
    let end = read_ptr(mm, config.mm_arg_end) as usize;
    let mut len = end.saturating_sub(start);
    if len > MAX_ARGS - 1 {
        len = MAX_ARGS - 1;
        *flags |= FLAG_ARGS_TRUNCATED;
    }
    // "R2 unbounded memory access" without this: the mask gives the verifier a bound it
    // can see, and is the identity for every length that reaches it.
    let len = len & (MAX_ARGS - 1);
    // SAFETY: `args` points into the reserved record and `len` < MAX_ARGS; the helper
    // checks the user address.
    let dst = unsafe { &mut (&mut *args)[..len] };
    // SAFETY: as above.
    match unsafe { bpf_probe_read_user_buf(start as *const u8, dst) } {
        Ok(()) => u32::try_from(len).unwrap_or(0),
        Err(_) => 0,
    }
}
