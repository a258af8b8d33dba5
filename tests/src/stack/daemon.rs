//! A long-running nodeward process: its log goes to a file, SIGTERM stops it gracefully,
//! and its log is printed if the test fails while it runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::process::ProcessGuard;
use crate::wait::wait_until;

/// A started daemon; dropping it kills it (SIGKILL) if [`Daemon::terminate`] was not called.
#[derive(Debug)]
pub struct Daemon {
    guard: ProcessGuard,
    name: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` with stderr (its log) in `log`; stdout is the caller's choice.
    /// Colour is off so logs read as text.
    #[must_use]
    pub fn start(mut command: Command, name: &str, log: &Path) -> Self {
        let file = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        command
            .stderr(file)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info");
        Self {
            guard: ProcessGuard::spawn(&mut command, name),
            name: name.to_owned(),
            log: log.to_owned(),
        }
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Everything the process logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.guard.is_running()
    }

    /// The underlying guard, e.g. to take a piped stdout.
    pub fn guard_mut(&mut self) -> &mut ProcessGuard {
        &mut self.guard
    }

    /// Sends SIGTERM and waits (up to 20 s) for it to exit; returns how it exited.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_and_wait(Signal::SIGTERM)
    }

    /// Sends SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal_and_wait(Signal::SIGKILL)
    }

    fn signal_and_wait(&mut self, signal: Signal) -> ExitStatus {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pid fits i32"));
        if self.guard.is_running() {
            kill(pid, signal).unwrap_or_else(|e| panic!("{signal} {}: {e}", self.name));
        }
        let child = self.guard.child_mut();
        wait_until(
            Duration::from_secs(20),
            &format!("{} to exit after SIGTERM", self.name),
            || child.try_wait().expect("wait for child"),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}",
                self.name,
                self.log.display(),
                self.log()
            );
        }
    }
}
