//! Named network namespaces (`ip netns`) as RAII guards, and the `ip` commands run in them.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{Flock, FlockArg};
use nix::sched::{CloneFlags, setns};

/// Where `ip netns` keeps its bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Serializes `ip netns add` within this process; see [`NetNs::new`].
static ADD_LOCK: Mutex<()> = Mutex::new(());

/// Returns an id unique to this process and call, `nw<pid>-<counter>`, to prefix the names of
/// namespaces and cgroups so parallel tests and parallel test binaries never collide.
#[must_use]
pub fn unique_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    format!("nw{}-{n}", std::process::id())
}

/// A named network namespace, deleted (`ip netns del`) when dropped.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace `name` with `ip netns add` and brings its loopback up.
    ///
    /// Panics if it already exists (a leftover of a killed run would be reported, not reused).
    #[must_use]
    pub fn new(name: &str) -> Self {
        {
            // The first `ip netns add` on a machine bind-mounts /run/netns onto itself; two
            // racing first calls stack two mounts and hide each other's namespaces. A mutex
            // covers our threads, an flock on /run covers parallel test processes (nextest).
            let _threads = ADD_LOCK
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _processes = File::open("/run")
                .ok()
                .and_then(|dir| Flock::lock(dir, FlockArg::LockExclusive).ok());
            ip(&["netns", "add", name]);
        }
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name, as `ip netns list` shows it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's bind mount, `/run/netns/<name>`, which `setns` can open.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Opens the namespace for `setns`; panics with the path if it cannot.
    #[must_use]
    pub fn open(&self) -> File {
        open_netns(&self.path())
    }

    /// The namespace's inode, to compare with `/proc/<pid>/ns/net` of a process.
    #[must_use]
    pub fn inode(&self) -> u64 {
        let path = self.path();
        std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
            .ino()
    }

    /// Runs `ip -n <name> <args>` and returns its stdout; panics with the command and its
    /// stderr if it fails.
    #[track_caller]
    #[expect(
        clippy::must_use_candidate,
        reason = "most commands run for their effect"
    )]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `f` on a thread that has joined this namespace, and returns its result.
    ///
    /// A network namespace belongs to a thread, not to the process, so the caller's own
    /// thread stays where it was. Sockets made by `f` stay in this namespace.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = self.open();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    enter_netns(&file, &self.name);
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Writes a sysctl of this namespace, e.g. `("net/ipv4/ip_forward", "1")`; only the
    /// `net/` tree is per namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = Path::new("/proc/sys").join(key);
        self.run_in(|| {
            // /proc/sys/net resolves against the netns of the thread that opens it.
            std::fs::write(&path, value).unwrap_or_else(|e| {
                panic!(
                    "sysctl {}={value} in netns {}: {e}",
                    path.display(),
                    self.name
                )
            });
        });
    }

    /// The names of all named namespaces (`ip netns list`), to look for leftovers.
    #[must_use]
    pub fn list() -> Vec<String> {
        ip(&["netns", "list"])
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        if let Err(e) = try_ip(&["netns", "del", &self.name]) {
            eprintln!("testkit: {e}");
        }
    }
}

/// Creates a veth pair with one end, `a_if`, in `a` and the other, `b_if`, in `b`.
///
/// Both ends are created directly inside their namespaces, so the names never meet in the
/// root namespace and tests running in parallel may reuse them.
pub fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// Runs `ip <args>` in the caller's namespace and returns stdout; panics with the command
/// and its stderr if it fails.
#[track_caller]
#[expect(
    clippy::must_use_candidate,
    reason = "most commands run for their effect"
)]
pub fn ip(args: &[&str]) -> String {
    try_ip(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `ip <args>`; the error names the command, its exit status and its stderr.
pub(crate) fn try_ip(args: &[&str]) -> Result<String, String> {
    let command = format!("`ip {}`", args.join(" "));
    let out = Command::new(ip_program())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {command}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{command} failed ({}): {}",
            out.status,
            stderr.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Opens a namespace file for `setns`; panics naming it if it cannot.
pub(crate) fn open_netns(path: &Path) -> File {
    File::open(path).unwrap_or_else(|e| panic!("open netns {}: {e}", path.display()))
}

/// Moves the calling thread into the namespace `file`; panics naming it if it cannot.
pub(crate) fn enter_netns(file: &File, name: &str) {
    setns(file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns into {name}: {e}"));
}

/// iproute2's `ip`; test runners' PATH often lacks the sbin directories.
fn ip_program() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("ip")
}
