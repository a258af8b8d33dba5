//! A private PostgreSQL cluster for the benchmark: Debian's server binaries (installed
//! with apt when missing), `initdb` into a temporary directory, the postmaster started as
//! our own child on a loopback port, stopped by its PID and the directory removed.

use std::{
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// Database and role the collector uses.
const DB: &str = "nodeward";

pub struct Cluster {
    postmaster: Child,
    port: u16,
    bin: PathBuf,
    // Dropped last: the cluster's files go once the postmaster has stopped.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Installs PostgreSQL if needed, then creates and starts a cluster with database
    /// `nodeward`. Durability is the server's default (`fsync`, `synchronous_commit` on),
    /// as the SQLite store's is `synchronous=FULL`.
    pub fn start() -> anyhow::Result<Self> {
        let bin = crate::setup::postgres_server()?;
        let dir = tempfile::Builder::new().prefix("nodeward-pg-").tempdir()?;
        // PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
        let owner = crate::demo::is_root().then(postgres_ids).transpose()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--username",
                DB,
            ])
            .arg("-D")
            .arg(&data)
            .current_dir(dir.path())
            .stdout(Stdio::null());
        cmd::run(as_owner(&mut initdb, owner))?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("postgres.log"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path().join("postgres.log"), Some(uid), Some(gid))?;
        }
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log);
        let postmaster = as_owner(&mut postgres, owner)
            .spawn()
            .context("starting postgres")?;
        let mut cluster = Self {
            postmaster,
            port,
            bin,
            dir,
        };
        cluster.wait_ready()?;
        cmd::run(Command::new(cluster.bin.join("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            DB,
            DB,
        ]))?;
        Ok(cluster)
    }

    /// A URL for the collector's `storage`; `trust` authentication ignores the password.
    pub fn url(&self) -> String {
        format!("postgres://{DB}:bench@127.0.0.1:{}/{DB}", self.port)
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> u32 {
        self.postmaster.id()
    }

    /// The postmaster's server log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.postmaster.try_wait()? {
                bail!(
                    "postgres exited ({status}):\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("postgres did not accept connections within 30 s")
    }

    /// Fast shutdown (SIGINT: backends are told to exit, the cluster is checkpointed).
    fn stop(&mut self) {
        if matches!(self.postmaster.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-INT", &self.postmaster.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.postmaster.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            // Still there: no more patience for a benchmark's throwaway cluster.
            if matches!(self.postmaster.try_wait(), Ok(None)) {
                let _ = self.postmaster.kill();
                let _ = self.postmaster.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    let id = |flag| -> anyhow::Result<u32> {
        cmd::output(Command::new("id").args([flag, "postgres"]))
            .context("no `postgres` user (is the postgresql package installed?)")?
            .parse()
            .context("parsing the output of id")
    };
    Ok((id("-u")?, id("-g")?))
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
