//! Types that cross the boundary between nodeward's eBPF programs and user space.
//!
//! Everything here is `#[repr(C)]`, uses `u32` flags instead of `bool`, and carries a
//! compile-time size assertion, because the kernel side and the agent are compiled
//! separately (different targets, different toolchains) and must agree byte for byte.
#![no_std]

pub mod egress;
pub mod exec;
pub mod imds;
pub mod wakeup;

/// Length of `task_struct::comm`, including the trailing NUL.
pub const TASK_COMM_LEN: usize = 16;

/// `AF_INET`, as the kernel reports it in `bpf_sock_addr::user_family`.
pub const AF_INET: u32 = 2;
/// `AF_INET6`, as the kernel reports it in `bpf_sock_addr::user_family`.
pub const AF_INET6: u32 = 10;
