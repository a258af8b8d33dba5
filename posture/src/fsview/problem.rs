//! Why a file the kubelet names could not be judged.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A reason a file could not be read or judged. It is never a scan failure: the checks that
/// depend on the file report `error` with this reason, and the rest of the scan goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// Nothing exists at the path (or at a symlink's target).
    Missing { path: PathBuf },
    /// The path exists but could not be read (permissions, I/O error).
    Unreadable { path: PathBuf, reason: String },
    /// A component that must be a directory is not one.
    NotADirectory { path: PathBuf },
    /// The path names something other than a regular file (a directory, a socket, ...).
    NotAFile { path: PathBuf, kind: &'static str },
    /// More symlinks than the kernel would follow, or a loop.
    SymlinkLoop { path: PathBuf },
    /// A symlink's target cannot be expressed inside the root (for example `..` above the
    /// kubelet's working directory when that directory is only known through `/proc`).
    Escapes { path: PathBuf },
    /// Larger than any legitimate file of its kind.
    Oversized {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// Not text: NUL bytes or invalid UTF-8.
    Binary { path: PathBuf },
    /// Text, but not what it should be (YAML/JSON syntax, wrong kind, no PEM block, ...).
    Invalid { path: PathBuf, reason: String },
}

impl FileProblem {
    /// Builds the right variant for an I/O error met at `path`.
    pub(crate) fn from_io(path: PathBuf, err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => Self::Missing { path },
            io::ErrorKind::NotADirectory => Self::NotADirectory { path },
            _ if err.raw_os_error() == Some(libc::ELOOP) => Self::SymlinkLoop { path },
            _ => Self::Unreadable {
                path,
                reason: err.to_string(),
            },
        }
    }

    /// The node path the problem is about.
    pub fn path(&self) -> &PathBuf {
        match self {
            Self::Missing { path }
            | Self::Unreadable { path, .. }
            | Self::NotADirectory { path }
            | Self::NotAFile { path, .. }
            | Self::SymlinkLoop { path }
            | Self::Escapes { path }
            | Self::Oversized { path, .. }
            | Self::Binary { path }
            | Self::Invalid { path, .. } => path,
        }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { path } => write!(f, "{}: not found", path.display()),
            Self::Unreadable { path, reason } => {
                write!(f, "{}: cannot be read: {reason}", path.display())
            }
            Self::NotADirectory { path } => write!(f, "{}: not a directory", path.display()),
            Self::NotAFile { path, kind } => {
                write!(f, "{}: is a {kind}, not a regular file", path.display())
            }
            Self::SymlinkLoop { path } => {
                write!(f, "{}: too many levels of symbolic links", path.display())
            }
            Self::Escapes { path } => write!(
                f,
                "{}: resolves outside what the scanner can see of the node",
                path.display()
            ),
            Self::Oversized { path, size, limit } => write!(
                f,
                "{}: {size} bytes, larger than the {limit}-byte limit",
                path.display()
            ),
            Self::Binary { path } => write!(f, "{}: binary content, not text", path.display()),
            Self::Invalid { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}
