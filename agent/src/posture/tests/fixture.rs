//! A fixture node tree with a private `proc`, a fake kubelet (a copy of `/bin/sh` named
//! `kubelet`, blocked on `read`, with kubelet flags on its command line), and a running
//! monitor to wait on.

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use nodeward_proto::model::{PostureCheck, PostureSnapshot};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::posture::{PostureMonitor, PostureReceiver, config::PostureConfig};

pub(super) const ANONYMOUS: &str = "kubelet-anonymous-auth";
pub(super) const CONFIG: &str = "etc/kubernetes/kubelet/config.json";
/// Long enough that the timer never fires in a test unless the test wants it to.
pub(super) const HOUR: u64 = 3600;
/// What a test waits for a snapshot at most.
pub(super) const DEADLINE: Duration = Duration::from_secs(8);

/// A node's `/` in a temporary directory, with a private `proc`.
pub(super) struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    pub(super) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nodeward-posture-node-")
            .tempdir()
            .expect("temporary node root");
        fs::create_dir(dir.path().join("proc")).expect("mkdir proc");
        Self { dir }
    }

    pub(super) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn path(&self, node_path: &str) -> PathBuf {
        self.root().join(node_path)
    }

    /// Writes a file in place (creating its directories).
    pub(super) fn write(&self, node_path: &str, text: &str) -> &Self {
        let path = self.path(node_path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self
    }

    /// Replaces a file as editors do: a new file renamed over the old one.
    pub(super) fn replace(&self, node_path: &str, text: &str) {
        let path = self.path(node_path);
        let temp = path.with_extension("swp");
        fs::write(&temp, text).unwrap_or_else(|e| panic!("write {}: {e}", temp.display()));
        fs::rename(&temp, &path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
    }

    /// Makes a process visible in the private `proc`.
    pub(super) fn show(&self, kubelet: &FakeKubelet) {
        symlink(
            format!("/proc/{}", kubelet.pid()),
            self.path(&format!("proc/{}", kubelet.pid())),
        )
        .expect("link proc entry");
    }

    pub(super) fn hide(&self, kubelet: &FakeKubelet) {
        fs::remove_file(self.path(&format!("proc/{}", kubelet.pid()))).expect("unlink proc entry");
    }

    pub(super) fn config(&self) -> PostureConfig {
        PostureConfig {
            enabled: true,
            host_root: Some(self.root().to_path_buf()),
            interval_seconds: HOUR,
        }
    }

    /// `--config` naming the fixture's kubelet config file, as this machine sees it.
    pub(super) fn config_flag(&self) -> String {
        format!("--config={}", self.path(CONFIG).display())
    }
}

pub(super) fn kubelet_config(anonymous: bool) -> String {
    format!(
        r#"{{"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {{"anonymous": {{"enabled": {anonymous}}}, "webhook": {{"enabled": true}}}},
            "authorization": {{"mode": "Webhook"}}}}"#
    )
}

/// A process whose executable is named `kubelet`, with kubelet flags on its command line;
/// killed by pid and reaped when dropped.
pub(super) struct FakeKubelet {
    child: Child,
    _bin: tempfile::TempDir,
}

impl FakeKubelet {
    pub(super) fn start(flags: &[String]) -> Self {
        let bin = tempfile::Builder::new()
            .prefix("nodeward-posture-bin-")
            .tempdir()
            .expect("temporary bin dir");
        let exe = bin.path().join("kubelet");
        fs::copy("/bin/sh", &exe).expect("copy /bin/sh");
        // `sh -c SCRIPT NAME ARGS...` leaves ARGS alone; `read` blocks on our pipe
        // without forking, so the process stays the one named `kubelet`.
        let mut args = vec![
            "-c".to_owned(),
            "read line".to_owned(),
            "kubelet".to_owned(),
        ];
        args.extend_from_slice(flags);
        let child = spawn(&exe, &args);
        let kubelet = Self { child, _bin: bin };
        kubelet.wait_exec(flags);
        kubelet
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Until `/proc/<pid>` shows the copy and its flags, not the test between fork and exec.
    fn wait_exec(&self, flags: &[String]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let dir = PathBuf::from(format!("/proc/{}", self.pid()));
        while std::time::Instant::now() < deadline {
            let named = fs::read_link(dir.join("exe"))
                .is_ok_and(|p| p.file_name().is_some_and(|n| n == "kubelet"));
            let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
            let last = flags.last().map_or(&b""[..], |f| f.as_bytes());
            if named && cmdline.windows(last.len().max(1)).any(|w| w == last) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("fake kubelet (pid {}) never exec'ed", self.pid());
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        // This child only, by pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(exe: &Path, args: &[String]) -> Child {
    // A copy just written may still be open in a child another test thread is forking
    // (ETXTBSY): retry briefly.
    for _ in 0..50 {
        match Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => return child,
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawn {}: {e}", exe.display()),
        }
    }
    panic!("spawn {}: executable file busy", exe.display());
}

/// A running monitor; cancelled when dropped.
pub(super) struct Running {
    pub(super) rx: PostureReceiver,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    token: CancellationToken,
    pub(super) mode: watch::Sender<String>,
}

impl Running {
    pub(super) fn start(monitor: PostureMonitor) -> Self {
        let token = CancellationToken::new();
        let (mode, mode_rx) = watch::channel("enforce".to_owned());
        let (rx, task) = monitor.watch(mode_rx, String::clone, token.clone());
        Self {
            rx,
            task: tokio::spawn(task),
            token,
            mode,
        }
    }

    /// The next snapshot published, within the deadline.
    pub(super) async fn next(&mut self, why: &str) -> PostureSnapshot {
        tokio::time::timeout(DEADLINE, self.rx.changed())
            .await
            .unwrap_or_else(|_| panic!("no snapshot within {DEADLINE:?}: {why}"))
            .expect("monitor alive");
        self.rx
            .borrow_and_update()
            .clone()
            .expect("a published snapshot is Some")
    }

    /// The next snapshot whose scan ran, skipping those of a kubelet briefly gone or doubled
    /// while it restarts.
    pub(super) async fn next_judged(&mut self, why: &str) -> PostureSnapshot {
        loop {
            let snapshot = self.next(why).await;
            if snapshot.scan_error.is_none() {
                return snapshot;
            }
        }
    }

    /// Asserts nothing is published for `quiet`.
    pub(super) async fn nothing_for(&mut self, quiet: Duration, why: &str) {
        if let Ok(changed) = tokio::time::timeout(quiet, self.rx.changed()).await {
            changed.expect("monitor alive");
            panic!(
                "unexpected snapshot ({why}): {:?}",
                self.rx.borrow_and_update()
            );
        }
    }

    pub(super) async fn stop(self) {
        assert!(!self.task.is_finished(), "the monitor stopped on its own");
        self.token.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("monitor stops when cancelled")
            .expect("monitor task joined")
            .expect("monitor ends cleanly");
    }
}

pub(super) fn check<'a>(snapshot: &'a PostureSnapshot, id: &str) -> &'a PostureCheck {
    snapshot
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {snapshot:?}"))
}

pub(super) fn fast(node: &Node) -> PostureMonitor {
    PostureMonitor::new(node.config())
        .process_poll(Duration::from_millis(200))
        .debounce(Duration::from_millis(200))
}
