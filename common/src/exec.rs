//! Exec sensor: every successful exec below the pod cgroup (or on the whole node), read at
//! `sched_process_exec`, with the binary path and argv.

use crate::TASK_COMM_LEN;

/// One-entry array holding [`ExecConfig`].
pub const MAP_CONFIG: &str = "EXEC_CONFIG";
/// Ring buffer of [`ExecEvent`]s.
pub const MAP_EVENTS: &str = "EXEC_EVENTS";
/// Per-CPU counters, indexed by the `STAT_*` constants.
pub const MAP_STATS: &str = "EXEC_STATS";

/// Program name, as the agent finds it in the object file.
pub const PROG_EXEC: &str = "exec_sensor";

/// Bytes of argv kept; longer argv is cut and marked. A power of two, so the program can
/// mask lengths into range.
pub const MAX_ARGS: usize = 1024;
/// Bytes of the binary path kept (`PATH_MAX` is 4096; longer paths are cut and marked).
pub const MAX_FILENAME: usize = 256;
/// Ring buffer size in bytes: room for about 3000 events before the agent must read.
pub const EVENTS_RING_BYTES: u32 = 4 * 1024 * 1024;

/// Report execs on the whole node, not only below the pod cgroup.
pub const CONFIG_HOST_PROCESSES: u32 = 1;

/// The process has a controlling terminal (an interactive session).
pub const FLAG_TTY: u32 = 1;
/// argv was longer than [`MAX_ARGS`].
pub const FLAG_ARGS_TRUNCATED: u32 = 2;
/// The binary path was longer than [`MAX_FILENAME`].
pub const FLAG_FILENAME_TRUNCATED: u32 = 4;

/// Index in [`MAP_STATS`]: events the ring buffer had no room for.
pub const STAT_EVENTS_LOST: u32 = 0;
/// Index in [`MAP_STATS`]: execs seen and reported.
pub const STAT_REPORTED: u32 = 1;
/// Number of entries in [`MAP_STATS`].
pub const STAT_COUNT: u32 = 2;

/// What the program needs to know: kernel struct offsets (from the running kernel's BTF,
/// never compiled in) and which cgroup holds the pods.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// Id of the pod cgroup; 0 until the agent has written the config (nothing is
    /// reported before that).
    pub pod_cgroup_id: u64,
    /// Depth of the pod cgroup below the cgroup2 root (the root is 0).
    pub pod_cgroup_level: u32,
    /// `CONFIG_*` flags.
    pub flags: u32,
    pub task_mm: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_signal: u32,
    pub signal_tty: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub bprm_filename: u32,
}

/// One exec.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub cgroup_id: u64,
    /// `bpf_ktime_get_boot_ns` at the exec.
    pub boot_ns: u64,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Valid bytes in `args` (NUL-separated, as in /proc/<pid>/cmdline).
    pub args_len: u32,
    /// Valid bytes in `filename`, without the NUL.
    pub filename_len: u32,
    /// Always zero; keeps the struct free of implicit padding.
    pub reserved: u32,
    pub comm: [u8; TASK_COMM_LEN],
    /// The path the binary was executed by (as given to execve, so it may be relative).
    pub filename: [u8; MAX_FILENAME],
    pub args: [u8; MAX_ARGS],
}

const _: () = assert!(size_of::<ExecConfig>() == 48);
const _: () = assert!(size_of::<ExecEvent>() == 48 + TASK_COMM_LEN + MAX_FILENAME + MAX_ARGS);
const _: () = assert!(MAX_ARGS.is_power_of_two() && MAX_FILENAME.is_power_of_two());

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both types are `#[repr(C)]`, contain only integers and byte arrays, and have
    // no implicit padding (the size assertions above would fail if they did).
    unsafe impl aya::Pod for super::ExecConfig {}
    unsafe impl aya::Pod for super::ExecEvent {}
}
