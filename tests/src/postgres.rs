//! A PostgreSQL server for tests: the one `NODEWARD_TEST_POSTGRES_URL` names, or else a
//! private cluster this test process starts once from Debian's server binaries
//! (`/usr/lib/postgresql/<version>/bin`), in a temporary directory, on a loopback port.
//!
//! The cluster outlives no test process: the postmaster runs under a small shell that
//! waits for its standard input to close, which happens when the test process exits
//! however it exits, then stops the postmaster and removes the directory.

use std::{
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use nix::unistd::{Gid, Uid, User, geteuid};

/// A server for the tests instead of a private cluster, e.g. `postgres://u:p@host/db`.
pub const POSTGRES_URL_ENV: &str = "NODEWARD_TEST_POSTGRES_URL";

/// The role the private cluster is created with (`trust` authentication).
const ROLE: &str = "nodeward";

/// The watchdogs' standard inputs, closed only when the test process exits.
static WATCHDOGS: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());

/// The URL of a PostgreSQL server the test may create schemas in.
///
/// Uses [`POSTGRES_URL_ENV`] when set, else a private cluster shared by the tests of this
/// process. Without either: in CI (`CI=true`) it panics, because a skipped storage test
/// there would look like a passing one; elsewhere it prints a loud SKIPPED banner and
/// returns `None`.
#[must_use]
pub fn require_postgres(test_name: &str) -> Option<String> {
    if let Ok(url) = std::env::var(POSTGRES_URL_ENV) {
        return Some(url);
    }
    private_cluster(test_name).map(|cluster| cluster.0)
}

/// The URL of the private cluster, which serves TLS with a certificate for `127.0.0.1`
/// and `localhost`, and the CA certificate (PEM) that signed it. The same CI and skip
/// rules as [`require_postgres`] apply; [`POSTGRES_URL_ENV`] is not used (its server's
/// TLS setup is unknown).
#[must_use]
pub fn require_postgres_tls(test_name: &str) -> Option<(String, PathBuf)> {
    private_cluster(test_name)
}

/// The private cluster's URL and CA file, started on first use.
fn private_cluster(test_name: &str) -> Option<(String, PathBuf)> {
    static CLUSTER: OnceLock<Result<(String, PathBuf), String>> = OnceLock::new();
    if let Some(bin) = server_bin_dir() {
        let cluster = CLUSTER.get_or_init(|| start(&bin));
        return Some(
            cluster
                .clone()
                .unwrap_or_else(|e| panic!("{test_name}: starting PostgreSQL: {e}")),
        );
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test_name}: needs PostgreSQL, and CI has neither {POSTGRES_URL_ENV} nor \
         /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    );
    eprintln!(
        "\n\
         ************************************************************\n\
         * SKIPPED {test_name}\n\
         * This test needs PostgreSQL: install Debian's postgresql\n\
         * package, or set {POSTGRES_URL_ENV}.\n\
         ************************************************************\n"
    );
    None
}

/// `/usr/lib/postgresql/<newest>/bin`, if a server is installed.
fn server_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Creates and starts a cluster; returns its URL and CA file.
fn start(bin: &Path) -> Result<(String, PathBuf), String> {
    // PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
    let owner = if geteuid().is_root() {
        let user = User::from_name("postgres")
            .map_err(|e| e.to_string())?
            .ok_or("running as root and there is no `postgres` user to run the server as")?;
        Some((user.uid, user.gid))
    } else {
        None
    };
    let dir = tempfile::Builder::new()
        .prefix("nodeward-test-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        // Removed by the watchdog shell once the postmaster has stopped.
        .keep();
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let data = dir.join("data");
    let out = as_owner(Command::new(bin.join("initdb")), owner)
        .args([
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--username",
            ROLE,
        ])
        .arg("-D")
        .arg(&data)
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tls = issue_tls(&dir, owner)?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // fsync off: these clusters are thrown away, and the machine is shared. Parallel
    // tests each open pools of several connections.
    let script = r#"
        "$0" -D "$1" -h 127.0.0.1 -p "$2" -k "$3" -c fsync=off -c max_connections=400 \
            -c ssl=on -c ssl_cert_file="$3/tls/collector.crt" -c ssl_key_file="$3/tls/collector.key" \
            >"$3/postgres.log" 2>&1 &
        pid=$!
        read -r _
        kill -INT "$pid"
        wait "$pid"
        rm -rf "$3"
    "#;
    let mut watchdog = as_owner(Command::new("sh"), owner)
        .arg("-c")
        .arg(script)
        .arg(bin.join("postgres"))
        .arg(&data)
        .arg(port.to_string())
        .arg(&dir)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // The watchdog outlives the test process by the server's shutdown; holding the
        // test's stderr that long makes test runners report the test as leaking. The
        // server's own output is in postgres.log.
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    let stdin = watchdog.stdin.take().ok_or("no stdin for the watchdog")?;
    // Kept open until the process exits (then the watchdog stops the cluster).
    WATCHDOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(stdin);
    wait_ready(bin, port, &dir, &mut watchdog)?;
    eprintln!(
        "PostgreSQL for tests on 127.0.0.1:{port} in {}",
        dir.display()
    );
    Ok((
        format!("postgres://{ROLE}@127.0.0.1:{port}/postgres"),
        tls.join("ca.crt"),
    ))
}

/// The server's certificate and key, and the CA that signed them, under `dir/tls`.
/// TLS is on so that clients can be tested with sslmode=verify-full; the server reads its
/// key as its own user, and only from a file no one else can read.
fn issue_tls(dir: &Path, owner: Option<(Uid, Gid)>) -> Result<PathBuf, String> {
    let tls = dir.join("tls");
    crate::certs::write_certs(&tls, &crate::certs::CertsOptions::default())
        .map_err(|e| format!("issuing the server certificate: {e:#}"))?;
    if let Some((uid, gid)) = owner {
        for file in std::iter::once(tls.clone()).chain(
            std::fs::read_dir(&tls)
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .map(|e| e.path()),
        ) {
            nix::unistd::chown(&file, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
    }
    Ok(tls)
}

/// Waits until the server accepts connections, or fails with its log if it exited.
fn wait_ready(bin: &Path, port: u16, dir: &Path, watchdog: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        if let Ok(Some(status)) = watchdog.try_wait() {
            return Err(format!(
                "postgres exited ({status}): {}",
                std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
            ));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("postgres did not accept connections within a minute".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn as_owner(mut command: Command, owner: Option<(Uid, Gid)>) -> Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid.as_raw()).gid(gid.as_raw());
    }
    command
}
