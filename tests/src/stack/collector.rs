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
}

impl CollectorProcess {
    /// Starts a collector whose config, database and log live in `dir`, and waits until
    /// it accepts connections.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        let addr = free_loopback_port();
        let db = dir.join("collector.db");
        let config = dir.join("collector.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: {addr}\nstorage: sqlite://{}\ntls: disabled\n",
                db.display()
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let mut command = Command::new(workspace_bin("nodeward-collector"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null());
        let mut daemon = Daemon::start(command, "nodeward-collector", &dir.join("collector.log"));
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
        Self { daemon, addr, db }
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
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

/// A loopback port nobody listens on right now. Another process could take it before the
/// collector binds it; on a test machine that is rare, and the collector then fails loudly.
fn free_loopback_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral loopback port")
}
