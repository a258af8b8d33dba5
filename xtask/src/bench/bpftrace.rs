//! The reference monitor `--against bpftrace`: the "bpftrace, printf per event" column of
//! ../shared/research-data/perf-anchors.md, run again in the same benchmark as nodeward.
//! Anchors taken on another day carry that day's machine; a monitor measured in the same
//! run, alternating with nodeward and the baseline, carries the same noise.
//!
//! The script prints one line per exec and per `connect()`, from the syscall tracepoints,
//! into a pipe that is read and counted (the cheapest consumer there is). bpftrace starts
//! before its run and is killed after it: its syscall tracepoints slow every process while
//! they are enabled, so it must not overlap the other two sides.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nodeward_testkit::poll_until;

const SCRIPT: &str = r#"
tracepoint:syscalls:sys_enter_execve { printf("exec pid=%d comm=%s file=%s\n", pid, comm, str(args->filename)); }
tracepoint:syscalls:sys_enter_connect { printf("connect pid=%d comm=%s fd=%d\n", pid, comm, args->fd); }
"#;

/// Where tracefs goes when nothing mounted it: bpftrace finds tracepoints there.
const TRACEFS: &str = "/sys/kernel/tracing";

/// How long bpftrace may take to compile its script and attach.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// bpftrace installed and tracefs mounted, for as long as this lives.
pub struct Bpftrace {
    program: PathBuf,
    /// Set when this benchmark mounted tracefs itself, to unmount it again.
    mounted_tracefs: bool,
}

impl Bpftrace {
    /// Installs Debian's bpftrace when absent and mounts tracefs when nothing has.
    pub fn prepare() -> anyhow::Result<Self> {
        let program = if let Some(path) = which("bpftrace") {
            path
        } else {
            crate::setup::apt_install("bpftrace")?;
            which("bpftrace").context("apt-get installed bpftrace but it is not on PATH")?
        };
        let tracefs =
            nodeward_testkit::mount_of_type("tracefs").context("reading /proc/self/mountinfo")?;
        let mounted_tracefs = if tracefs.is_some() {
            false
        } else {
            mount(
                Some("tracefs"),
                TRACEFS,
                Some("tracefs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .with_context(|| format!("mounting tracefs at {TRACEFS} for bpftrace"))?;
            true
        };
        Ok(Self {
            program,
            mounted_tracefs,
        })
    }

    /// Starts the script and returns once its probes deliver events.
    pub fn start(&self) -> anyhow::Result<Running> {
        let mut child = Command::new(&self.program)
            .args(["-e", SCRIPT])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        let stdout = child.stdout.take().context("bpftrace's stdout")?;
        let events = Arc::new(AtomicU64::new(0));
        let reader = {
            let events = Arc::clone(&events);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("exec ") || line.starts_with("connect ") {
                        events.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let mut running = Running {
            child,
            reader: Some(reader),
            events,
            before: 0,
        };
        running.wait_attached()?;
        running.before = running.events.load(Ordering::Relaxed);
        Ok(running)
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if self.mounted_tracefs
            && let Err(error) = umount2(TRACEFS, MntFlags::MNT_DETACH)
        {
            eprintln!("bench: unmounting {TRACEFS}: {error}");
        }
    }
}

/// A running bpftrace; killed when dropped.
pub struct Running {
    child: Child,
    reader: Option<JoinHandle<()>>,
    events: Arc<AtomicU64>,
    /// Events printed while waiting for the probes, not by the measured run.
    before: u64,
}

impl Running {
    /// Execs `/bin/true` until bpftrace prints it: the probes are attached then, not when
    /// bpftrace says it is attaching them.
    fn wait_attached(&mut self) -> anyhow::Result<()> {
        let mut stopped = Ok(());
        let attached = poll_until(START_TIMEOUT, || {
            if self.events.load(Ordering::Relaxed) > 0 {
                return true;
            }
            stopped = match self.child.try_wait() {
                Ok(Some(status)) => Err(anyhow!(
                    "bpftrace exited before its probes were attached ({status})"
                )),
                Ok(None) => crate::interrupt::check(),
                Err(error) => Err(error).context("waiting for bpftrace"),
            };
            if stopped.is_ok()
                && let Err(error) = Command::new("/bin/true").status()
            {
                stopped = Err(error).context("running /bin/true");
            }
            stopped.is_err()
        });
        stopped?;
        if !attached {
            bail!("bpftrace printed no event within {START_TIMEOUT:?}");
        }
        Ok(())
    }

    /// Stops bpftrace and returns the events it printed since it was attached.
    pub fn stop(mut self) -> u64 {
        self.end();
        self.events.load(Ordering::Relaxed) - self.before
    }

    fn end(&mut self) {
        // Killing closes its BPF links: the tracepoints go with the process.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.end();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
