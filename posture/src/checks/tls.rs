//! The kubelet's TLS: its serving certificate, certificate rotation, and cipher suites.

use super::outcome::Outcome;
use super::{CheckDef, Context, Group};
use crate::config::Source;
use crate::config::Value;
use crate::config::settings::{
    ROTATE_CERTIFICATES, ROTATE_SERVER_CERT_GATE, SERVER_TLS_BOOTSTRAP, TLS_CERT_FILE,
    TLS_CIPHER_SUITES, TLS_MIN_VERSION, TLS_PRIVATE_KEY_FILE,
};
use crate::fsview::MAX_CERT_BYTES;

/// The suites CIS Kubernetes 1.12 item 4.2.12 accepts.
pub(crate) const STRONG_CIPHERS: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
];

pub(super) const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "kubelet-tls-cert-files",
        title: "The kubelet serves TLS with a certificate not self-signed at start",
        group: Group::Kubelet,
        benchmarks: &["cis-1.12:4.2.9"],
        expected: "tlsCertFile and tlsPrivateKeyFile set to readable files, or serverTLSBootstrap: true",
        remediation: "Set tlsCertFile and tlsPrivateKeyFile to a certificate issued by the cluster CA, or serverTLSBootstrap: true, and restart the kubelet",
        run: tls_cert_files,
    },
    CheckDef {
        id: "kubelet-rotate-certificates",
        title: "The kubelet rotates its client certificate",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.8", "cis-1.12:4.2.10"],
        expected: "rotateCertificates: true, unless the kubelet authenticates without a client certificate",
        remediation: "Set rotateCertificates: true in the kubelet config (and drop --rotate-certificates=false) and restart the kubelet",
        run: rotate_certificates,
    },
    CheckDef {
        id: "kubelet-rotate-server-certificate",
        title: "Kubelet serving certificate rotation is enabled",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.9", "cis-1.12:4.2.11"],
        expected: "feature gate RotateKubeletServerCertificate true (the default) and serverTLSBootstrap: true",
        remediation: "Set featureGates.RotateKubeletServerCertificate: true and serverTLSBootstrap: true in the kubelet config, approve the kubelet-serving CSRs, and restart the kubelet",
        run: rotate_server_certificate,
    },
    CheckDef {
        id: "kubelet-tls-cipher-suites",
        title: "The kubelet offers only strong TLS cipher suites",
        group: Group::Kubelet,
        benchmarks: &["cis-1.12:4.2.12"],
        expected: "tlsCipherSuites a non-empty subset of the ECDHE AES-GCM / ChaCha20 suites, or tlsMinVersion: VersionTLS13",
        remediation: "Set tlsCipherSuites to TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 (or a subset) and restart the kubelet",
        run: cipher_suites,
    },
];

fn tls_cert_files(ctx: &Context) -> Outcome {
    let (cert, key) = match (
        ctx.setting(&TLS_CERT_FILE),
        ctx.setting(&TLS_PRIVATE_KEY_FILE),
    ) {
        (Ok(c), Ok(k)) => (c, k),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let source = format!("{}; {}", cert.source, key.source);
    match (Context::path_of(&cert), Context::path_of(&key)) {
        (Some(cert_path), Some(key_path)) => {
            let cert_read = ctx.read_in(ctx.fs(), &cert_path, MAX_CERT_BYTES);
            let key_read = ctx.facts(&key_path);
            match (cert_read, key_read) {
                (Ok((resolved, text)), Ok(key_facts)) => match crate::x509::certificates(&text) {
                    Ok(_) => Outcome::pass(
                        format!(
                            "tlsCertFile {}, tlsPrivateKeyFile {}",
                            resolved.path.display(),
                            key_facts.describe_path()
                        ),
                        source,
                    ),
                    Err(e) => Outcome::error(format!("{}: {e}", resolved.path.display()), source),
                },
                (Err(p), _) | (_, Err(p)) => Outcome::error(p.to_string(), source),
            }
        }
        (None, None) => match ctx.bool(&SERVER_TLS_BOOTSTRAP) {
            Ok(b) if b.value => Outcome::pass(
                "tlsCertFile unset; serverTLSBootstrap: true (the serving certificate is issued by the cluster CA and rotated)",
                b.source.to_string(),
            ),
            Ok(b) => Outcome::fail(
                format!(
                    "tlsCertFile and tlsPrivateKeyFile unset, serverTLSBootstrap {}: the kubelet serves a self-signed certificate",
                    ctx.describe(&b)
                ),
                source,
            ),
            Err(e) => e,
        },
        // The kubelet needs both or neither.
        (Some(_), None) => Outcome::fail("tlsCertFile set without tlsPrivateKeyFile", source),
        (None, Some(_)) => Outcome::fail("tlsPrivateKeyFile set without tlsCertFile", source),
    }
}

fn rotate_certificates(ctx: &Context) -> Outcome {
    let s = match ctx.bool(&ROTATE_CERTIFICATES) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let observed = ctx.describe(&s);
    let source = s.source.to_string();
    if s.value {
        return Outcome::pass(observed, source);
    }
    // Rotation only matters for a client certificate: an EKS kubelet authenticates with
    // an exec plugin (aws-iam-authenticator) and has none to rotate.
    match ctx.kubeconfig() {
        Some(Ok((_, auth))) if !auth.uses_client_certificate() && auth.token_or_exec => {
            Outcome::pass(
                format!(
                    "{observed}; the kubeconfig authenticates with a token or exec plugin, no client certificate to rotate"
                ),
                source,
            )
        }
        Some(Err(reason)) if s.source == Source::Default => Outcome::error(
            format!("{observed}; cannot tell whether a client certificate is used: {reason}"),
            source,
        ),
        _ => Outcome::fail(observed, source),
    }
}

fn rotate_server_certificate(ctx: &Context) -> Outcome {
    let (gate, bootstrap) = match (
        ctx.bool(&ROTATE_SERVER_CERT_GATE),
        ctx.bool(&SERVER_TLS_BOOTSTRAP),
    ) {
        (Ok(g), Ok(b)) => (g, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let observed = format!(
        "RotateKubeletServerCertificate {}; serverTLSBootstrap {}",
        ctx.describe(&gate),
        ctx.describe(&bootstrap)
    );
    let source = format!("{}; {}", gate.source, bootstrap.source);
    if !gate.value {
        return Outcome::fail(observed, source);
    }
    if bootstrap.value {
        return Outcome::pass(observed, source);
    }
    // The gate alone rotates nothing: without serverTLSBootstrap the kubelet keeps a
    // self-signed or a provided serving certificate.
    Outcome::warn(
        format!("{observed}: the gate is on but nothing requests a serving certificate"),
        source,
    )
}

fn cipher_suites(ctx: &Context) -> Outcome {
    let (suites, min) = match (
        ctx.setting(&TLS_CIPHER_SUITES),
        ctx.setting(&TLS_MIN_VERSION),
    ) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let source = suites.source.to_string();
    // TLS 1.3 suites are fixed by Go and all strong: the list only applies to TLS 1.2.
    if matches!(&min.value, Value::Str(v) if v == "VersionTLS13") {
        return Outcome::pass(
            format!("tlsMinVersion VersionTLS13 ({})", min.source),
            min.source.to_string(),
        );
    }
    let Value::List(list) = &suites.value else {
        return Outcome::error(format!("unexpected value {}", suites.value), source);
    };
    if list.is_empty() {
        return Outcome::fail(
            format!(
                "{}: Go's default suites, which include CBC-mode suites",
                ctx.describe(&suites)
            ),
            source,
        );
    }
    let weak: Vec<&str> = list
        .iter()
        .map(|s| s.trim())
        .filter(|s| !STRONG_CIPHERS.contains(s))
        .collect();
    if weak.is_empty() {
        Outcome::pass(ctx.describe(&suites), source)
    } else {
        Outcome::fail(
            format!("{}; not strong: {}", ctx.describe(&suites), weak.join(",")),
            source,
        )
    }
}
