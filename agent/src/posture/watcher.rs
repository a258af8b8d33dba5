//! inotify on what the last scan's verdicts depend on: each file or directory and the
//! directory holding it, since editors and `kubectl`-style tools replace a file by renaming
//! a new one over it, and a file that does not exist yet only shows up as an entry created
//! in its directory. A path that does not exist is watched through its nearest existing
//! ancestor. Events are debounced: a burst of writes is one rescan.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use futures::StreamExt as _;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::time::Instant;
use tracing::{debug, warn};

/// Room for a few events with file names up to `NAME_MAX`.
const EVENT_BUFFER: usize = 8192;

/// What changes a verdict: content, mode and owner, entries appearing, leaving or being
/// renamed, the watched thing itself going away. Opens and reads are left out: the scan
/// itself does those.
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
}

/// A burst of events waiting to become a rescan.
#[derive(Debug, Clone, Copy)]
struct Pending {
    first: Instant,
    last: Instant,
}

/// The watch set and the events it produced since the last rescan.
pub struct FileWatcher {
    /// `None` when inotify is unavailable: the timer and the kubelet poll still rescan.
    inotify: Option<(EventStream<Vec<u8>>, Watches)>,
    watched: HashMap<WatchDescriptor, PathBuf>,
    pending: Option<Pending>,
    /// Quiet time after the last event before rescanning.
    debounce: Duration,
    /// A steady trickle of events still rescans this often.
    max_delay: Duration,
}

impl FileWatcher {
    /// An empty watch set; says so once if inotify cannot be used.
    pub fn new(debounce: Duration) -> Self {
        let inotify = Inotify::init().and_then(|inotify| {
            let stream = inotify.into_event_stream(vec![0; EVENT_BUFFER])?;
            let watches = stream.watches();
            Ok((stream, watches))
        });
        let inotify = match inotify {
            Ok(inotify) => Some(inotify),
            Err(err) => {
                warn!(error = %err, "inotify unavailable: posture is rescanned on the timer and on kubelet changes only");
                None
            }
        };
        Self {
            inotify,
            watched: HashMap::new(),
            pending: None,
            debounce,
            max_delay: debounce * 10,
        }
    }

    /// Watches `dependencies` and their directories, and nothing else any more. Returns how
    /// many watches are in place.
    pub fn watch(&mut self, dependencies: &[PathBuf]) -> usize {
        let Some((_, watches)) = &mut self.inotify else {
            return 0;
        };
        let mut targets: Vec<&Path> = dependencies
            .iter()
            .flat_map(|d| [Some(d.as_path()), d.parent()])
            .flatten()
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let mut next = HashMap::new();
        let mut failed = Vec::new();
        for target in targets {
            match add_nearest(watches, target) {
                Ok((wd, path)) => {
                    next.insert(wd, path);
                }
                Err(err) => failed.push(format!("{}: {err}", target.display())),
            }
        }
        for wd in self.watched.keys().filter(|wd| !next.contains_key(*wd)) {
            // Fails when the watched inode is gone, which removed the watch already.
            let _ = watches.remove(wd.clone());
        }
        if !failed.is_empty() {
            warn!(
                count = failed.len(),
                first = failed[0],
                "some posture dependencies cannot be watched; the timer still rescans them"
            );
        }
        self.watched = next;
        debug!(watches = self.watched.len(), "posture dependencies watched");
        self.watched.len()
    }

    /// Waits for the next event and notes it (cancel-safe: what arrived is kept). Never
    /// returns without inotify.
    pub async fn next_event(&mut self) {
        let Some((stream, _)) = &mut self.inotify else {
            return std::future::pending().await;
        };
        match stream.next().await {
            // Our own removals, and watches of deleted inodes ending: not a change.
            Some(Ok(event)) if event.mask == EventMask::IGNORED => {}
            Some(Ok(event)) => {
                debug!(mask = ?event.mask, name = ?event.name, path = ?self.watched.get(&event.wd), "posture dependency changed");
                let now = Instant::now();
                let first = self.pending.map_or(now, |p| p.first);
                self.pending = Some(Pending { first, last: now });
            }
            Some(Err(err)) => self.give_up(&err),
            None => self.give_up(&io::Error::other("the inotify stream ended")),
        }
    }

    /// When pending events will have settled (`debounce` of quiet, or `max_delay` after the
    /// first): the time to rescan. `None` when no event waits.
    pub fn settle_at(&self) -> Option<Instant> {
        self.pending
            .map(|p| (p.last + self.debounce).min(p.first + self.max_delay))
    }

    /// A rescan starts: what happened until now is in it.
    pub fn clear(&mut self) {
        self.pending = None;
    }

    fn give_up(&mut self, err: &io::Error) {
        warn!(error = %err, "reading inotify events failed: posture is rescanned on the timer and on kubelet changes only");
        self.inotify = None;
        self.watched.clear();
        // The events may have been lost: rescan.
        let now = Instant::now();
        self.pending = Some(Pending {
            first: now,
            last: now,
        });
    }
}

/// Watches `path`, or when it does not exist, its nearest existing ancestor (where it
/// will be created).
fn add_nearest(watches: &mut Watches, path: &Path) -> io::Result<(WatchDescriptor, PathBuf)> {
    let mut candidate = path;
    loop {
        match watches.add(candidate, mask()) {
            Ok(wd) => return Ok((wd, candidate.to_path_buf())),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                match candidate.parent() {
                    Some(parent) => candidate = parent,
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        }
    }
}
