//! Certificates for fixtures, valid in windows around the fixture clock.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, date_time_ymd};

/// A certificate and its key, PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Pem {
    /// Certificate then key, as the kubelet writes `kubelet-client-current.pem`.
    pub fn bundle(&self) -> String {
        format!("{}{}", self.cert, self.key)
    }
}

/// A self-signed certificate for `cn`, valid from `from` to `until` (year, month, day).
pub fn cert(cn: &str, from: (i32, u8, u8), until: (i32, u8, u8), ca: bool) -> Pem {
    let mut params = CertificateParams::new(vec![cn.to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(until.0, until.1, until.2);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-sign");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// Valid around the fixture clock (2030-06-01) for years.
pub fn valid(cn: &str) -> Pem {
    cert(cn, (2029, 1, 1), (2033, 1, 1), false)
}

/// A CA valid for years around the fixture clock.
pub fn ca() -> Pem {
    cert("kubernetes", (2025, 1, 1), (2035, 1, 1), true)
}

/// Expired a month before the fixture clock.
pub fn expired(cn: &str) -> Pem {
    cert(cn, (2029, 1, 1), (2030, 5, 1), false)
}

/// Expires ten days after the fixture clock.
pub fn expiring(cn: &str) -> Pem {
    cert(cn, (2029, 1, 1), (2030, 6, 11), false)
}
