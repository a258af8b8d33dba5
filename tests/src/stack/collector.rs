//! `nodeward-collector serve` on a loopback port with a SQLite file in a scratch directory.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::probe::workspace_bin;
use crate::stack::Daemon;
use crate::wait::wait_until;

/// A running collector.
#[derive(Debug)]
pub struct CollectorProcess {
    daemon: Daemon,
    addr: SocketAddr,
    db: PathBuf,
    tls: bool,
    config: PathBuf,
    dir: PathBuf,
    starts: u32,
}

impl CollectorProcess {
    /// Starts a collector whose config, database and log live in `dir`, and waits until
    /// it accepts connections.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, None, "")
    }

    /// Starts a collector with mutual TLS, its CA and server certificate from `certs` (as
    /// [`crate::certs::write_certs`] lays them out).
    #[must_use]
    pub fn start_tls(dir: &Path, certs: &Path) -> Self {
        Self::start_with(dir, Some(certs), "")
    }

    /// Starts a collector; `certs` as in [`CollectorProcess::start_tls`], `extra_yaml`
    /// appended to its config.
    #[must_use]
    pub fn start_with(dir: &Path, certs: Option<&Path>, extra_yaml: &str) -> Self {
        let addr = free_loopback_port();
        let db = dir.join("collector.db");
        let config = dir.join("collector.yaml");
        let tls = certs.map_or_else(
            || "tls: disabled\n".to_owned(),
            |certs| {
                format!(
                    "tls: mutual\ncaFile: {}\ncertFile: {}\nkeyFile: {}\n",
                    certs.join("ca.crt").display(),
                    certs.join("collector.crt").display(),
                    certs.join("collector.key").display()
                )
            },
        );
        std::fs::write(
            &config,
            format!(
                "listen: {addr}\nstorage: sqlite://{}\nmetricsListen: 127.0.0.1:0\n{tls}{extra_yaml}",
                db.display()
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let daemon = serve(&config, &dir.join("collector.log"), addr);
        Self {
            daemon,
            addr,
            db,
            tls: certs.is_some(),
            config,
            dir: dir.to_owned(),
            starts: 1,
        }
    }

    /// Starts the collector again on the same port, config and database (after
    /// [`Daemon::kill`] on [`CollectorProcess::daemon`]); its log continues in a new file.
    pub fn restart(&mut self) {
        self.starts += 1;
        let log = self.dir.join(format!("collector.{}.log", self.starts));
        self.daemon = serve(&self.config, &log, self.addr);
    }

    /// `http://127.0.0.1:<port>`, or `https://` with TLS.
    #[must_use]
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The SQLite file.
    #[must_use]
    pub fn database(&self) -> &Path {
        &self.db
    }

    /// The process.
    pub fn daemon(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

/// Runs `serve` and waits until it accepts connections on `addr`.
fn serve(config: &Path, log: &Path, addr: SocketAddr) -> Daemon {
    let mut command = Command::new(workspace_bin("nodeward-collector"));
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null());
    let mut daemon = Daemon::start(command, "nodeward-collector", log);
    wait_until(
        Duration::from_secs(20),
        "the collector to accept connections",
        || {
            assert!(
                daemon.is_running(),
                "the collector exited:\n{}",
                daemon.log()
            );
            TcpStream::connect(addr).ok().map(drop)
        },
    );
    daemon
}

/// A loopback port nobody listens on right now. Another process could take it before the
/// collector binds it; on a test machine that is rare, and the collector then fails loudly.
fn free_loopback_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral loopback port")
}
