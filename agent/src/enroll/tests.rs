use std::os::unix::fs::PermissionsExt as _;

use super::files::{Due, due, install};

/// A self-signed certificate valid from 2020-01-01 to 2023-01-01 (three years), and its key.
fn cert() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2023, 1, 1);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

const Y2020: i64 = 1_577_836_800;
const Y2021: i64 = 1_609_459_200;
const Y2023: i64 = 1_672_531_200;

#[test]
fn renewal_is_due_a_third_of_the_lifetime_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (
        dir.path().join("pki/tls.crt"),
        dir.path().join("pki/tls.key"),
    );
    match due(&crt, &key, Y2021) {
        Due::Now(why) => assert!(why.contains("no certificate"), "{why}"),
        Due::At(at) => panic!("due at {at} without a certificate"),
    }
    let (cert_pem, key_pem) = cert();
    install(&crt, &key, &cert_pem, &key_pem).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600, "the key is never readable by others");
    assert_eq!(mode(&crt), 0o644);
    assert_eq!(mode(&dir.path().join("pki")), 0o700);
    let renew_at = Y2023 - (Y2023 - Y2020) / 3;
    assert_eq!(due(&crt, &key, Y2021), Due::At(renew_at));
    assert!(matches!(due(&crt, &key, renew_at), Due::Now(why) if why.contains("expires")));

    // A key that is not the certificate's (a crash between the two writes).
    let (_, other_key) = cert();
    std::fs::write(&key, other_key).unwrap();
    assert!(matches!(due(&crt, &key, Y2021), Due::Now(why) if why.contains("is not the key")));
    std::fs::write(&crt, "garbage").unwrap();
    assert!(matches!(due(&crt, &key, Y2021), Due::Now(why) if why.contains("PEM")));
}
