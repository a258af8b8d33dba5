//! Signing an agent's CSR for the node attestation found. Only the CSR's public key is
//! used, after its signature proves the agent holds the private key; whatever names,
//! extensions or validity it asks for are ignored. The certificate says exactly one
//! thing: `spiffe://nodeward/node/<node>`, a client certificate, for `ttl`.
//!
//! The CA files are read at every issuance: issuance is rare (a node every few hours),
//! and a rotated CA is then used without a restart.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use rand::Rng as _;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject as _;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::EnrollError;

/// The largest CSR accepted, in bytes of PEM (an RSA-4096 CSR is under 2 KiB).
pub const MAX_CSR_BYTES: usize = 16 * 1024;
/// Backdated so a node whose clock is a little behind accepts the certificate at once.
const BACKDATE: Duration = Duration::from_mins(5);

/// What was issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, then the CA's chain, PEM.
    pub chain_pem: String,
    pub not_after: OffsetDateTime,
    pub serial: String,
}

/// The CA files agents' certificates are signed with.
#[derive(Debug, Clone)]
pub struct Authority {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// A CA read from its files.
struct Loaded {
    issuer: Issuer<'static, KeyPair>,
    chain_pem: String,
    not_after: OffsetDateTime,
}

impl Authority {
    /// Reads the files once, so that a missing or mismatched CA stops the collector at
    /// start rather than at the first agent.
    pub fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, EnrollError> {
        let authority = Self {
            cert_file,
            key_file,
        };
        authority.read()?;
        Ok(authority)
    }

    /// Signs the CSR's key into a client certificate for `node`, valid for `ttl` (or
    /// until the CA expires, if sooner).
    pub fn issue(
        &self,
        csr: &CertificateSigningRequestParams,
        node: &str,
        ttl: Duration,
    ) -> Result<Issued, EnrollError> {
        // The API server validates node names; this keeps a SPIFFE path segment one
        // whatever a (fake, or future) API server sends.
        if !is_dns_subdomain(node) {
            return Err(EnrollError::Internal(format!(
                "node name {node:?} is not a DNS subdomain"
            )));
        }
        let ca = self.read()?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        // Not `system:node:<node>`: these certificates must never pass for a kubelet's.
        params.distinguished_name.push(DnType::CommonName, node);
        let uri = format!("spiffe://nodeward/node/{node}");
        params.subject_alt_names =
            vec![SanType::URI(uri.try_into().map_err(|_| {
                EnrollError::Internal("node name is not ASCII".to_owned())
            })?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = (now + ttl).min(ca.not_after);
        let serial: [u8; 16] = rand::rng().random();
        // Positive: the first bit of a DER INTEGER is its sign.
        let mut serial = serial.to_vec();
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params
            .signed_by(&csr.public_key, &ca.issuer)
            .map_err(|e| EnrollError::Internal(format!("signing: {e}")))?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), ca.chain_pem),
            not_after: params.not_after,
            serial: serial.iter().fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            }),
        })
    }

    fn read(&self) -> Result<Loaded, EnrollError> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|e| {
                EnrollError::Internal(format!("enrollment CA: reading {}: {e}", path.display()))
            })
        };
        let (cert_pem, key_pem) = (read(&self.cert_file)?, read(&self.key_file)?);
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            EnrollError::Internal(format!("enrollment CA: {what}: {e}"))
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| bad(&self.key_file.display().to_string(), &e))?;
        let first = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .ok_or_else(|| bad(&self.cert_file.display().to_string(), &"no certificate"))?
            .map_err(|e| bad(&self.cert_file.display().to_string(), &e))?;
        let (_, parsed) = X509Certificate::from_der(&first)
            .map_err(|e| bad(&self.cert_file.display().to_string(), &e))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad(
                &self.key_file.display().to_string(),
                &format!("is not the key of {}", self.cert_file.display()),
            ));
        }
        if !parsed.is_ca() {
            return Err(bad(
                &self.cert_file.display().to_string(),
                &"is not a CA certificate",
            ));
        }
        let not_after = parsed.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&first, key)
            .map_err(|e| bad(&self.cert_file.display().to_string(), &e))?;
        let chain_pem = if cert_pem.ends_with('\n') {
            cert_pem
        } else {
            format!("{cert_pem}\n")
        };
        Ok(Loaded {
            issuer,
            chain_pem,
            not_after,
        })
    }
}

/// RFC 1123 subdomain, as Kubernetes requires of Node names.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The CSR, its signature checked, with a key type worth signing.
pub fn parse_csr(pem: &str) -> Result<CertificateSigningRequestParams, EnrollError> {
    if pem.len() > MAX_CSR_BYTES {
        return Err(EnrollError::BadCsr(format!(
            "larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    let csr = CertificateSigningRequestParams::from_pem(pem)
        .map_err(|e| EnrollError::BadCsr(e.to_string()))?;
    let alg = csr.public_key.algorithm();
    // Elliptic curves only: no RSA key size to police, and what the agent generates.
    let accepted = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ];
    if !accepted.contains(&alg) {
        return Err(EnrollError::BadCsr(format!(
            "key algorithm {alg:?}: use ECDSA P-256, P-384 or Ed25519"
        )));
    }
    Ok(csr)
}
