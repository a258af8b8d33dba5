//! Mutual TLS between agents, the collector and SOC clients.
//!
//! Every party has a certificate from the configured CA. Who a peer is comes from its
//! certificate alone: a URI SAN `spiffe://nodeward/node/<name>` (or, for certificates
//! issued the kubelet's way, the subject CN `system:node:<name>`) is the agent of node
//! `<name>`; `spiffe://nodeward/soc/<name>` (or CN `soc:<name>`) is a SOC client. The
//! collector lets a node report only for itself and a SOC client only read.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use serde::Deserialize;

/// Whether a link is encrypted and mutually authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    /// Plaintext; for local tests and demos, and logged as a warning.
    Disabled,
    /// TLS with certificates on both sides, from `caFile`.
    Mutual,
}

/// The PEM files of one party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle peers' certificates must chain to.
    pub ca_file: PathBuf,
    /// This party's certificate chain.
    pub cert_file: PathBuf,
    /// This party's private key.
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// Checks a config's `tls`, `caFile`, `certFile` and `keyFile` together (`prefix` is
    /// the keys' section, e.g. `collector.`): `mutual` needs all three files, `disabled`
    /// none, so a half-configured link is an error rather than silently plaintext.
    pub fn from_config(
        prefix: &str,
        mode: TlsMode,
        ca_file: Option<&Path>,
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
    ) -> Result<Option<Self>, String> {
        match (mode, ca_file, cert_file, key_file) {
            (TlsMode::Mutual, Some(ca), Some(cert), Some(key)) => Ok(Some(Self {
                ca_file: ca.to_owned(),
                cert_file: cert.to_owned(),
                key_file: key.to_owned(),
            })),
            (TlsMode::Mutual, ..) => {
                let missing: Vec<String> = [
                    ("caFile", ca_file),
                    ("certFile", cert_file),
                    ("keyFile", key_file),
                ]
                .into_iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| format!("{prefix}{k}"))
                .collect();
                Err(format!("{prefix}tls: mutual needs {}", missing.join(", ")))
            }
            (TlsMode::Disabled, None, None, None) => Ok(None),
            (TlsMode::Disabled, ..) => Err(format!(
                "{prefix}tls: disabled, but certificate files are set; set {prefix}tls: mutual or remove them"
            )),
        }
    }

    /// Reads the three files; errors name the file.
    pub fn read(&self) -> Result<TlsMaterial, TlsError> {
        Ok(TlsMaterial {
            ca: read(&self.ca_file)?,
            cert: read(&self.cert_file)?,
            key: read(&self.key_file)?,
            files: self.clone(),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The PEM contents of a party's files.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    files: TlsFiles,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("TlsMaterial")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("building the TLS configuration from {cert} and {ca}")]
    Config {
        cert: PathBuf,
        ca: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Whether a server's handshake requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate, no connection.
    Required,
    /// A client may connect without one (agents enrolling for their first certificate);
    /// one it presents must still chain to the CA. Each service then decides whether the
    /// caller needs an identity.
    Optional,
}

impl TlsMaterial {
    /// A rustls server configuration that requires a client certificate chaining to the
    /// CA and speaks HTTP/2 (gRPC).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.server_config_for(ClientAuth::Required)
    }

    /// As [`TlsMaterial::server_config`], with client certificates `client_auth`.
    pub fn server_config_for(
        &self,
        client_auth: ClientAuth,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let files = &self.files;
        let config_error = |source: Box<dyn std::error::Error + Send + Sync>| TlsError::Config {
            cert: files.cert_file.clone(),
            ca: files.ca_file.clone(),
            source,
        };
        let mut roots = RootCertStore::empty();
        for cert in certificates(&self.ca, &files.ca_file)? {
            roots.add(cert).map_err(|e| config_error(Box::new(e)))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if client_auth == ClientAuth::Optional {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier.build().map_err(|e| config_error(Box::new(e)))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| TlsError::Pem {
            path: files.key_file.clone(),
            reason: format!("no usable private key: {e}"),
        })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(Box::new(e)))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates(&self.cert, &files.cert_file)?, key)
            .map_err(|e| config_error(Box::new(e)))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: format!("not a PEM certificate list: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "holds no certificate".to_owned(),
        });
    }
    Ok(certs)
}

/// Who a peer certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// The agent of this node.
    Node(String),
    /// A SOC client (read-only).
    Soc(String),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(name) => write!(f, "node {name}"),
            Self::Soc(name) => write!(f, "SOC client {name}"),
        }
    }
}

const NODE_URI: &str = "spiffe://nodeward/node/";
const SOC_URI: &str = "spiffe://nodeward/soc/";
const NODE_CN: &str = "system:node:";
const SOC_CN: &str = "soc:";

/// The identity in a (verified) peer certificate, or why it has none.
pub fn peer_identity(der: &[u8]) -> Result<Peer, String> {
    use x509_parser::{extensions::GeneralName, prelude::*};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("unparsable client certificate: {e}"))?;
    let uris: Vec<&str> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found: Vec<Peer> = uris
        .iter()
        .filter_map(|uri| {
            uri.strip_prefix(NODE_URI)
                .map(|n| Peer::Node(n.to_owned()))
                .or_else(|| uri.strip_prefix(SOC_URI).map(|n| Peer::Soc(n.to_owned())))
        })
        .collect();
    if found.is_empty() {
        found.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .filter_map(|cn| {
                    cn.strip_prefix(NODE_CN)
                        .map(|n| Peer::Node(n.to_owned()))
                        .or_else(|| cn.strip_prefix(SOC_CN).map(|n| Peer::Soc(n.to_owned())))
                }),
        );
    }
    found.dedup();
    match found.as_slice() {
        [peer] if !matches!(peer, Peer::Node(n) | Peer::Soc(n) if n.is_empty()) => Ok(peer.clone()),
        [] => Err(format!(
            "client certificate {} names neither a node ({NODE_URI}<name>) nor a SOC client ({SOC_URI}<name>)",
            cert.subject()
        )),
        _ => Err(format!(
            "client certificate {} names more than one identity: {found:?}",
            cert.subject()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn identities_come_from_the_uri_san_or_the_common_name() {
        assert_eq!(
            peer_identity(&cert("x", &["spiffe://nodeward/node/node-a"])),
            Ok(Peer::Node("node-a".into()))
        );
        assert_eq!(
            peer_identity(&cert("x", &["spiffe://nodeward/soc/analyst"])),
            Ok(Peer::Soc("analyst".into()))
        );
        assert_eq!(
            peer_identity(&cert("system:node:ip-10-0-1-7", &[])),
            Ok(Peer::Node("ip-10-0-1-7".into()))
        );
        // The SAN wins over the CN: a certificate is one identity.
        assert_eq!(
            peer_identity(&cert("system:node:b", &["spiffe://nodeward/node/a"])),
            Ok(Peer::Node("a".into()))
        );
    }

    #[test]
    fn certificates_without_one_clear_identity_are_refused() {
        assert!(peer_identity(&cert("web", &[])).is_err());
        assert!(peer_identity(&cert("x", &["spiffe://nodeward/node/"])).is_err());
        let two = peer_identity(&cert(
            "x",
            &["spiffe://nodeward/node/a", "spiffe://nodeward/soc/a"],
        ));
        assert!(two.unwrap_err().contains("more than one"));
        assert!(peer_identity(b"garbage").is_err());
    }

    #[test]
    fn half_configured_tls_is_an_error_naming_the_keys() {
        let p = Path::new("/x");
        let err =
            TlsFiles::from_config("collector.", TlsMode::Mutual, Some(p), None, None).unwrap_err();
        assert!(
            err.contains("collector.certFile, collector.keyFile"),
            "{err}"
        );
        let err = TlsFiles::from_config("", TlsMode::Disabled, None, Some(p), None).unwrap_err();
        assert!(err.contains("tls: disabled"), "{err}");
        assert_eq!(
            TlsFiles::from_config("", TlsMode::Disabled, None, None, None),
            Ok(None)
        );
    }
}
