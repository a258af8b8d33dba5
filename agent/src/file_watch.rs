//! Noticing that a file changed: polling what any rewrite changes (modification time,
//! size, inode). Polling rather than inotify because the files watched are often
//! ConfigMap mounts, which change by swapping a symlink two levels up, and a poll a second
//! costs nothing next to that.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use tokio_util::sync::CancellationToken;

/// What changes when a file (or what a symlink points at) is replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(Option<(SystemTime, u64, u64)>);

impl Stamp {
    /// The file's stamp now; an absent file has a stamp too, so its return is a change.
    pub fn of(path: &Path) -> Self {
        Self(
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino()))),
        )
    }
}

/// Calls `on_change` each time the file's stamp differs from the last one seen, starting
/// from `since` (taken before the caller's first read, so a change racing with that read
/// is not missed), until `token` is cancelled.
pub async fn on_change(
    path: PathBuf,
    since: Stamp,
    every: Duration,
    token: CancellationToken,
    mut on_change: impl FnMut(&Path),
) {
    let mut last = since;
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = Stamp::of(&path);
        if now != last {
            last = now;
            on_change(&path);
        }
    }
}
