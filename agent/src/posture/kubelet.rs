//! Noticing that the kubelet changed: another pid, another start time (restarted under the
//! same pid after a pid wrap, or in a new pid namespace) or another command line (new
//! flags). Cheap enough to poll every few seconds: one `/proc` listing, then the command
//! line and `stat` of the kubelet only.

use std::path::{Path, PathBuf};

use nodeward_posture::process;

/// What identifies the running kubelet(s); equal fingerprints mean nothing to rescan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fingerprint {
    /// Each process named `kubelet`, by pid: its start time and command line.
    Processes(Vec<(u32, Option<u64>, Vec<String>)>),
    /// Processes could not be listed (the error, so a changed reason is a change too).
    Unlisted(String),
}

/// Fingerprints the kubelet as seen in the node's `/proc`.
#[derive(Debug, Clone)]
pub struct KubeletProbe {
    proc_dir: PathBuf,
}

impl KubeletProbe {
    /// Looks where a scan with this host root (`None` is `/`) finds processes.
    pub fn new(host_root: Option<&Path>) -> Self {
        Self {
            proc_dir: process::proc_dir(host_root.unwrap_or(Path::new("/"))),
        }
    }

    /// The kubelet now. Blocking: reads `/proc`.
    pub fn fingerprint(&self) -> Fingerprint {
        match process::find(&self.proc_dir, "kubelet") {
            Ok(pids) => Fingerprint::Processes(
                pids.into_iter()
                    .filter_map(|pid| {
                        // Gone between the listing and now: it is not running.
                        let info = process::open(&self.proc_dir, pid).ok()?;
                        Some((pid, info.start_time, info.args))
                    })
                    .collect(),
            ),
            Err(err) => Fingerprint::Unlisted(err.to_string()),
        }
    }
}
