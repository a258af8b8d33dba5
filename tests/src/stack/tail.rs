//! `nodeward-collector tail --format json`, the SOC's view: every line it prints is kept,
//! and tests wait (with a deadline) for a finding that matches.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::probe::workspace_bin;
use crate::stack::Daemon;

/// A running SOC subscriber.
#[derive(Debug)]
pub struct TailProcess {
    daemon: Daemon,
    lines: Receiver<String>,
    seen: Vec<Value>,
}

impl TailProcess {
    /// Subscribes to `endpoint`; `since` as in `tail --since` (`None`: from now on). Its
    /// log goes to `log`.
    #[must_use]
    pub fn start(endpoint: &str, since: Option<u64>, log: &std::path::Path) -> Self {
        Self::start_with(endpoint, since, &[], log)
    }

    /// As [`TailProcess::start`], with more arguments for `tail` (TLS files, filters).
    #[must_use]
    pub fn start_with(
        endpoint: &str,
        since: Option<u64>,
        args: &[String],
        log: &std::path::Path,
    ) -> Self {
        let mut command = Command::new(workspace_bin("nodeward-collector"));
        command.args(["tail", "--format", "json", "--endpoint", endpoint]);
        command.args(args);
        if let Some(since) = since {
            command.arg("--since").arg(since.to_string());
        }
        command.stdout(Stdio::piped());
        let mut daemon = Daemon::start(command, "nodeward-collector tail", log);
        let stdout = daemon
            .guard_mut()
            .child_mut()
            .stdout
            .take()
            .expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            daemon,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `deadline` for a printed finding for which `matches` holds and returns
    /// it. Panics naming `what`, with everything printed so far, on timeout or a line that
    /// is not JSON.
    pub fn wait_for(
        &mut self,
        deadline: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(found) = self.seen.iter().find(|v| matches(v)) {
            return found.clone();
        }
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("tail printed a line that is not JSON ({e}): {line}")
                    });
                    self.seen.push(value.clone());
                    if matches(&value) {
                        return value;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no finding {what} within {deadline:?}; tail printed: {:#?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "tail exited before printing a finding {what}:\n{}",
                        self.daemon.log()
                    )
                }
            }
        }
    }

    /// A finding printed so far for which `matches` holds, without waiting for more.
    pub fn try_find(&mut self, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        while let Ok(line) = self.lines.try_recv() {
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("tail printed a line that is not JSON ({e}): {line}"));
            self.seen.push(value);
        }
        self.seen.iter().find(|v| matches(v)).cloned()
    }

    /// Every finding printed so far (only those already read by [`TailProcess::wait_for`]
    /// or [`TailProcess::try_find`]).
    #[must_use]
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }
}
