//! Writing files that others read while they change: certificates and keys.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// A step of [`write_atomically`] that failed, and on which file.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}", path.display())]
pub struct WriteError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Writes through a temporary file created with `mode`, then renames: a key is never
/// readable by others, not even for a moment, and a reader or a crash never meets a
/// half-written file.
pub fn write_atomically(path: &Path, content: &[u8], mode: u32) -> Result<(), WriteError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let at = |action, path: &Path| {
        let path = path.to_owned();
        move |source| WriteError {
            action,
            path,
            source,
        }
    };
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(at("creating", &tmp))?;
    // The umask may have narrowed `mode`; a certificate is meant to be world-readable.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(at("setting the mode of", &tmp))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(at("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(at("renaming into place", path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn replaces_the_file_with_the_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tls.key");
        fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!dir.path().join("tls.key.tmp").exists());
        let err = write_atomically(&dir.path().join("missing/x"), b"", 0o644).unwrap_err();
        assert!(err.to_string().contains("missing/x.tmp"), "{err}");
    }
}
