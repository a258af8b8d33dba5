//! The `posture` section of the agent's configuration.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// Rescans closer together than this are what inotify and the kubelet poll are for.
const MIN_INTERVAL_SECONDS: u64 = 10;

/// Continuous posture monitoring: the kubelet's effective configuration and the node files
/// it uses, checked at start, when one of them changes, when the kubelet restarts or
/// changes flags, and every `intervalSeconds`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostureConfig {
    /// Whether posture is monitored at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The node's `/` as the agent sees it (its DaemonSet mounts it at e.g. `/host`, with
    /// the host's `/proc` below it); unset, the agent's own `/` and `/proc` are the node's.
    /// Set from the top-level `hostRoot`, which other parts of the agent share.
    #[serde(skip)]
    pub host_root: Option<PathBuf>,
    /// Seconds between two scans when nothing prompted one earlier: a backstop for changes
    /// inotify cannot see (a file on a filesystem that sends no events, certificate expiry
    /// approaching, a watch that could not be placed). At least 10.
    #[serde(default = "default_interval_seconds")]
    pub interval_seconds: u64,
}

impl Default for PostureConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host_root: None,
            interval_seconds: default_interval_seconds(),
        }
    }
}

impl PostureConfig {
    /// Says what is wrong, naming the key, for `Config::validate`.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_seconds < MIN_INTERVAL_SECONDS {
            return Err(format!(
                "posture.intervalSeconds: {} is below the minimum of {MIN_INTERVAL_SECONDS}; \
                 file and kubelet changes are noticed without a short interval",
                self.interval_seconds
            ));
        }
        if let Some(root) = &self.host_root
            && !root.is_absolute()
        {
            return Err(format!(
                "hostRoot: {} must be an absolute path",
                root.display()
            ));
        }
        Ok(())
    }

    /// The timer's period.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds)
    }
}

fn yes() -> bool {
    true
}

fn default_interval_seconds() -> u64 {
    600
}
