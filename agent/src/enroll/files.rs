//! The certificate and key on disk: whether they need (re)issuing, and writing new ones
//! so that no reader ever sees half a file and the key is never readable by others.

use std::{fs, os::unix::fs::DirBuilderExt as _, path::Path};

use anyhow::Context as _;
use x509_parser::pem::parse_x509_pem;

/// When the certificate must be requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Now, and why.
    Now(String),
    /// At this Unix time: when a third of its lifetime is left.
    At(i64),
}

/// Looks at `cert_file` and `key_file` at Unix time `now`.
pub fn due(cert_file: &Path, key_file: &Path, now: i64) -> Due {
    match validity(cert_file, key_file) {
        Err(why) => Due::Now(why),
        Ok((not_before, not_after)) => {
            let renew_at = not_after - (not_after - not_before) / 3;
            if now >= renew_at {
                Due::Now(format!(
                    "the certificate expires at {not_after} (Unix time), renewing"
                ))
            } else {
                Due::At(renew_at)
            }
        }
    }
}

/// The certificate's validity, when it is there, parses and goes with the key.
fn validity(cert_file: &Path, key_file: &Path) -> Result<(i64, i64), String> {
    let pem = fs::read(cert_file)
        .map_err(|e| format!("no certificate at {}: {e}", cert_file.display()))?;
    let (_, pem) = parse_x509_pem(&pem)
        .map_err(|e| format!("{}: not a PEM certificate: {e}", cert_file.display()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("{}: unparsable certificate: {e}", cert_file.display()))?;
    let key = fs::read_to_string(key_file)
        .map_err(|e| format!("no key at {}: {e}", key_file.display()))?;
    let key = rcgen::KeyPair::from_pem(&key)
        .map_err(|e| format!("{}: unparsable key: {e}", key_file.display()))?;
    // A crash between writing the new key and its certificate leaves them apart.
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(format!(
            "{} is not the key of {}",
            key_file.display(),
            cert_file.display()
        ));
    }
    let validity = cert.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// Writes the key (mode 0600), then the certificate chain (0644), each through a
/// temporary file and a rename.
pub fn install(
    cert_file: &Path,
    key_file: &Path,
    chain_pem: &str,
    key_pem: &str,
) -> anyhow::Result<()> {
    write_file(key_file, key_pem, 0o600)?;
    write_file(cert_file, chain_pem, 0o644)
}

fn write_file(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(nodeward_runtime::files::write_atomically(
        path,
        content.as_bytes(),
        mode,
    )?)
}
