//! Fake kubelet (and kube-proxy) processes: the test binary `nodeward-fake-kubelet`
//! hard-linked under the right name, run with a real command line, killed by pid on drop.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running fake process; killed and reaped when dropped.
pub struct FakeProcess {
    child: Child,
    _bin_dir: tempfile::TempDir,
}

impl FakeProcess {
    /// Starts an executable named `name` (`kubelet`, `kube-proxy`) with `args` (the
    /// program path excluded), in `cwd`.
    pub fn start(name: &str, args: &[String], cwd: &Path) -> Self {
        let bin_dir = tempfile::Builder::new()
            .prefix("nodeward-bin-")
            .tempdir()
            .expect("temporary bin dir");
        let exe = bin_dir.path().join(name);
        link_or_copy(Path::new(env!("CARGO_BIN_EXE_nodeward-fake-kubelet")), &exe);
        let child = spawn(&exe, args, cwd);
        let process = Self {
            child,
            _bin_dir: bin_dir,
        };
        process.wait_exec(name);
        process
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Waits (with a deadline) until `/proc/<pid>/exe` names the fake, not the test binary
    /// between fork and exec, and its command line is in place.
    fn wait_exec(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let exe = PathBuf::from(format!("/proc/{}/exe", self.child.id()));
        while Instant::now() < deadline {
            // The kernel names the new executable before it lays out the new command
            // line: wait for both.
            let named = fs::read_link(&exe).is_ok_and(|p| p.file_name().is_some_and(|n| n == name));
            let cmdline =
                fs::read(format!("/proc/{}/cmdline", self.child.id())).unwrap_or_default();
            if named && !cmdline.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("fake {name} (pid {}) never exec'ed", self.child.id());
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        // By pid, this very child only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn link_or_copy(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    }
}

fn spawn(exe: &Path, args: &[String], cwd: &Path) -> Child {
    // A copy just written may still be open for writing in a child another test thread
    // is forking (ETXTBSY): retry briefly.
    let mut attempts = 0;
    loop {
        match Command::new(exe)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(26) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawn {}: {e}", exe.display()),
        }
    }
}

/// A private `proc` under a node root holding only the given processes (links to the real
/// `/proc/<pid>`), so discovery sees this test's fakes and not other tests'.
pub fn private_proc(root: &Path, pids: &[i32]) {
    let dir = root.join("proc");
    fs::create_dir_all(&dir).expect("mkdir proc");
    for pid in pids {
        symlink(format!("/proc/{pid}"), dir.join(pid.to_string())).expect("link proc entry");
    }
}
