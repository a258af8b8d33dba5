//! Work in the node's network namespace. The agent runs in it on a real node
//! (`hostNetwork: true`); `hostNetns` points elsewhere only where the node is simulated.
//! Netlink sockets and interface indexes belong to the namespace of the thread that uses
//! them, so such work runs on a short-lived thread that joins the namespace first.

use std::{
    fs::File,
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot join network namespace {path} (setns needs CAP_SYS_ADMIN)")]
    Join {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Runs `work` in the network namespace at `path`: on the calling thread when that is the
/// caller's own namespace (no privilege needed), else on a thread that joins it.
pub fn run_in<T: Send>(path: &Path, work: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let open = |path: &Path| {
        File::open(path).map_err(|source| NetnsError::Open {
            path: path.to_owned(),
            source,
        })
    };
    let target = open(path)?;
    let own = open(Path::new("/proc/thread-self/ns/net"))?;
    let (target_meta, own_meta) = (
        target.metadata().map_err(|source| NetnsError::Open {
            path: path.to_owned(),
            source,
        })?,
        own.metadata().map_err(|source| NetnsError::Open {
            path: "/proc/thread-self/ns/net".into(),
            source,
        })?,
    );
    if (target_meta.dev(), target_meta.ino()) == (own_meta.dev(), own_meta.ino()) {
        return Ok(work());
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Join {
                    path: path.to_owned(),
                    source: e.into(),
                })?;
                Ok(work())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_runs_inline() {
        let thread = std::thread::current().id();
        let ran_on = run_in(Path::new("/proc/self/ns/net"), || {
            std::thread::current().id()
        })
        .expect("own namespace");
        assert_eq!(ran_on, thread);
    }

    #[test]
    fn a_missing_namespace_is_named() {
        let err = run_in(Path::new("/nonexistent/netns"), || ()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
    }
}
