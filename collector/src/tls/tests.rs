//! Reloading the server's certificate files: a complete, consistent set is swapped in; a
//! missing, broken or half-renewed set is refused and the previous configuration kept.

use std::{fs, path::Path, sync::Arc};

use nodeward_testkit::certs::{CertsOptions, write_certs};

use super::*;

fn issue(dir: &Path) {
    write_certs(dir, &CertsOptions::default()).expect("issuing test certificates");
}

fn files(dir: &Path) -> TlsFiles {
    TlsFiles {
        ca_file: dir.join("ca.crt"),
        cert_file: dir.join("collector.crt"),
        key_file: dir.join("collector.key"),
    }
}

fn copy(from: &Path, to: &Path, name: &str) {
    fs::copy(from.join(name), to.join(name)).unwrap();
}

#[test]
fn only_a_complete_consistent_renewal_replaces_the_configuration() {
    let scratch = tempfile::tempdir().unwrap();
    let (live, renewed) = (scratch.path().join("live"), scratch.path().join("renewed"));
    issue(&live);
    issue(&renewed);
    let tls = ServerTls::load(files(&live), ClientAuth::Required).unwrap();
    let first = tls.config();
    assert!(!tls.reload().unwrap(), "unchanged files are not reloaded");
    assert!(Arc::ptr_eq(&first, &tls.config()));

    // A key that is not a key.
    fs::write(live.join("collector.key"), "not a key\n").unwrap();
    let err = tls.reload().unwrap_err().to_string();
    assert!(err.contains("collector.key"), "{err}");
    assert!(
        Arc::ptr_eq(&first, &tls.config()),
        "the old configuration stays"
    );

    // Half a renewal: the new key with the old certificate.
    copy(&renewed, &live, "collector.key");
    assert!(
        tls.reload().is_err(),
        "a key that does not match the certificate"
    );
    // A file gone for a moment.
    fs::remove_file(live.join("collector.crt")).unwrap();
    let err = tls.reload().unwrap_err().to_string();
    assert!(err.contains("collector.crt"), "{err}");
    assert!(Arc::ptr_eq(&first, &tls.config()));

    // The whole renewal.
    copy(&renewed, &live, "collector.crt");
    copy(&renewed, &live, "ca.crt");
    assert!(tls.reload().unwrap(), "a complete renewal is swapped in");
    let second = tls.config();
    assert!(!Arc::ptr_eq(&first, &second));
    // Clones share it: the acceptor sees what the watcher loaded.
    assert!(Arc::ptr_eq(&second, &tls.clone().config()));
}
