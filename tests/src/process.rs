//! Processes placed in a simulated node: a `Command` that joins a network namespace and a
//! cgroup before it execs, and a guard that kills a long-running process by PID.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::netns::open_netns;

/// Returns a `Command` for `program` that, in the child between fork and exec, moves itself
/// into the cgroup `cgroup_dir` (absolute) and joins the network namespace file `netns`.
///
/// Both files are opened here, before the fork: the child may only make async-signal-safe
/// calls (no allocation, no locks), so it does nothing but two syscalls on ready fds.
/// Panics naming the file if either cannot be opened.
pub(crate) fn command_in(program: impl AsRef<OsStr>, netns: &Path, cgroup_dir: &Path) -> Command {
    let netns = open_netns(netns);
    let procs_path = cgroup_dir.join("cgroup.procs");
    let procs = OpenOptions::new()
        .write(true)
        .open(&procs_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", procs_path.display()));
    let mut command = Command::new(program);
    join_before_exec(&mut command, netns, procs);
    command
}

#[expect(unsafe_code, reason = "pre_exec and raw syscalls in the forked child")]
fn join_before_exec(command: &mut Command, netns: File, procs: File) {
    let hook = move || {
        // Cgroup first, so that everything the child does from here on is accounted to (and
        // can be killed with) its cgroup. "0" means the writing process itself.
        // SAFETY: write(2) on an fd we own, from a static buffer; async-signal-safe.
        let written = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
        if written != 1 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: setns(2) on an fd we own; async-signal-safe.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook only makes the two syscalls above and builds `io::Error::Os`, which
    // does not allocate; its fds are O_CLOEXEC, so the new program does not inherit them.
    unsafe {
        command.pre_exec(hook);
    }
}

/// A process started by the harness; dropping the guard kills it (SIGKILL, by PID) and
/// reaps it.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Child,
    what: String,
}

impl ProcessGuard {
    /// Spawns `command` with stdin closed; panics naming `what` if it cannot start.
    #[must_use]
    pub fn spawn(command: &mut Command, what: &str) -> Self {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what} ({command:?}): {e}"));
        Self {
            child,
            what: what.to_owned(),
        }
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `std` child, e.g. to take its piped stdout or to wait for it.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether the process is still running (not yet exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if !self.is_running() {
            return;
        }
        // Child::kill signals this very PID, which cannot be reused before we reap it below.
        if let Err(e) = self.child.kill() {
            eprintln!("testkit: kill {} (pid {}): {e}", self.what, self.child.id());
        }
        let _ = self.child.wait();
    }
}

/// The inode of a process's network namespace (`/proc/<pid>/ns/net`), to compare with
/// [`NetNs::inode`](crate::NetNs::inode). Panics if the process is gone.
#[must_use]
pub fn process_netns_inode(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/ns/net");
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
}
