//! Certificates and keys in PEM files: validity windows for expiry checks, and whether a
//! file holds a private key.

use x509_parser::pem::Pem;

/// One certificate's identity and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Its subject, as a distinguished name.
    pub subject: String,
    /// Not valid before, seconds since the Unix epoch.
    pub not_before: i64,
    /// Not valid after, seconds since the Unix epoch.
    pub not_after: i64,
}

/// Every `CERTIFICATE` block of a PEM text. No block, or a block that is not a certificate,
/// is an error: a CA bundle or certificate file must be exactly that.
pub fn certificates(text: &str) -> Result<Vec<CertInfo>, String> {
    let mut certs = Vec::new();
    for (index, pem) in Pem::iter_from_buffer(text.as_bytes()).enumerate() {
        let pem = pem.map_err(|e| format!("PEM block {}: {e}", index + 1))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("certificate {}: {e}", index + 1))?;
        let validity = cert.validity();
        certs.push(CertInfo {
            subject: cert.subject().to_string(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        });
    }
    if certs.is_empty() {
        return Err("no PEM certificate in it".to_owned());
    }
    Ok(certs)
}

/// Whether a PEM text holds a private key (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE
/// KEY`, `ENCRYPTED PRIVATE KEY`).
pub fn holds_private_key(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with("PRIVATE KEY-----"))
}

/// Whether a PEM text holds a certificate.
pub fn holds_certificate(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_end() == "-----BEGIN CERTIFICATE-----")
}

/// Standard base64 (with or without padding), as kubeconfig `*-data` fields hold it.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_round_trips_known_vectors() {
        let cases = [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg", "foob"),
        ];
        for (encoded, plain) in cases {
            assert_eq!(
                base64_decode(encoded).as_deref(),
                Some(plain.as_bytes()),
                "{encoded}"
            );
        }
        assert_eq!(base64_decode("Zm9v!"), None);
    }
}
