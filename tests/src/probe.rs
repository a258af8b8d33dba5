//! Finding the workspace's binaries, and running `nodeward-probe` and reading its verdict.

use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Env var naming the directory that holds the workspace's binaries, overriding the lookup
/// next to the test executable.
pub const BIN_DIR_ENV: &str = "NODEWARD_BIN_DIR";

/// The one JSON line `nodeward-probe` prints.
///
/// `ok` says whether the network operation completed (for `http-get`, any HTTP status counts;
/// see `status`). On failure `errno` holds the OS error number when there is one, e.g. 1
/// (`EPERM`) when an eBPF cgroup program denied the connect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Whether the operation succeeded.
    pub ok: bool,
    /// HTTP status code (`http-get` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// HTTP response body (`http-get` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The OS error number of a failure, if the failure had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// A readable description of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Operations performed (`storm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<u64>,
    /// Wall time of the operations, in seconds (`storm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Operations per second (`storm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

impl ProbeResult {
    /// A success without HTTP details (e.g. `connect`).
    #[must_use]
    pub fn success() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    /// A failure from an I/O error. A timeout that carries no OS error (as `std`'s
    /// `connect_timeout` reports one) gets `ETIMEDOUT`, so every timeout looks the same.
    #[must_use]
    pub fn failure(error: &std::io::Error) -> Self {
        let timed_out = error.kind() == std::io::ErrorKind::TimedOut;
        let errno = error
            .raw_os_error()
            .or(timed_out.then_some(libc::ETIMEDOUT));
        Self {
            errno,
            error: Some(error.to_string()),
            ..Self::default()
        }
    }

    /// Whether the operation failed with `EPERM`, as a denying cgroup eBPF program makes it.
    #[must_use]
    pub fn is_denied(&self) -> bool {
        !self.ok && self.errno == Some(libc::EPERM)
    }
}

/// Runs a probe command to completion and parses the JSON line it printed.
///
/// Panics with the command, its exit status, stdout and stderr if it printed no valid result
/// line or if its exit code disagrees with the result (0 on success, 1 on failure).
#[must_use]
pub fn run_probe(command: &mut Command) -> ProbeResult {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run probe {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().next().unwrap_or_default();
    let result: ProbeResult = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "probe {command:?} ({}) printed no result ({e}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        )
    });
    let expected_code = i32::from(!result.ok);
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "probe {command:?} exit status disagrees with its result {line}\nstderr: {stderr}"
    );
    result
}

/// The path of the workspace binary `name` (e.g. `"nodeward-agent"`).
///
/// Looks in `$NODEWARD_BIN_DIR` if set, else in the cargo target directory of the running
/// test: a test executable lives in `target/<profile>/deps/`, binaries in `target/<profile>/`.
/// Panics with how to build it if it is not there: `cargo test -p <crate>` builds only that
/// crate's own binaries.
#[must_use]
pub fn workspace_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os(BIN_DIR_ENV).map_or_else(bin_dir_of_running_test, PathBuf::from);
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "workspace binary {name} not found at {}: build it with `cargo build --bins` \
         or run `cargo xtask test` (or point {BIN_DIR_ENV} at the directory that holds it)",
        path.display()
    );
    path
}

/// `target/<profile>/` for a test executable in `target/<profile>/deps/`; the executable's own
/// directory otherwise (a binary run from `target/<profile>/`).
fn bin_dir_of_running_test() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the running executable");
    let mut dir = exe
        .parent()
        .expect("executable has no directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of the `nodeward-probe` binary; see [`workspace_bin`].
#[must_use]
pub fn probe_path() -> PathBuf {
    workspace_bin("nodeward-probe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_shapes() {
        let ok: ProbeResult =
            serde_json::from_str(r#"{"ok":true,"status":200,"body":"x"}"#).unwrap();
        assert_eq!(
            (ok.ok, ok.status, ok.body.as_deref()),
            (true, Some(200), Some("x"))
        );
        let denied: ProbeResult = serde_json::from_str(
            r#"{"ok":false,"errno":1,"error":"Operation not permitted (os error 1)"}"#,
        )
        .unwrap();
        assert!(denied.is_denied());
        assert_eq!(
            serde_json::to_string(&ProbeResult::success()).unwrap(),
            r#"{"ok":true}"#
        );
        let eperm = ProbeResult::failure(&std::io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(
            serde_json::to_string(&eperm).unwrap(),
            r#"{"ok":false,"errno":1,"error":"Operation not permitted (os error 1)"}"#
        );
    }
}
