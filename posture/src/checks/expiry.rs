//! Certificates that stop the node working when they expire: the kubelet's serving and
//! client certificates, and the client CA bundle. Within 30 days of expiry is a warning.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::judge::worst;
use super::outcome::{Outcome, Status};
use super::{CheckDef, Context, Group};
use crate::config::settings::{CLIENT_CA_FILE, SERVER_TLS_BOOTSTRAP, TLS_CERT_FILE};
use crate::fsview::{FileProblem, MAX_CERT_BYTES};
use crate::x509::CertInfo;

/// Warn this long before a certificate expires.
pub(crate) const EXPIRY_WARNING_DAYS: i64 = 30;
const DAY: i64 = 86_400;

pub(super) const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "kubelet-serving-cert-expiry",
        title: "The kubelet's serving certificate is valid and not about to expire",
        group: Group::Pki,
        benchmarks: &[],
        expected: "valid now and for more than 30 days",
        remediation: "Renew the kubelet serving certificate (serverTLSBootstrap: true rotates it; approve pending kubelet-serving CSRs)",
        run: serving,
    },
    CheckDef {
        id: "kubelet-client-cert-expiry",
        title: "The kubelet's client certificate is valid and not about to expire",
        group: Group::Pki,
        benchmarks: &[],
        expected: "valid now and for more than 30 days",
        remediation: "Renew the kubelet client certificate (rotateCertificates: true renews it; kubeadm: kubeadm certs renew, then restart the kubelet)",
        run: client,
    },
    CheckDef {
        id: "kubelet-client-ca-expiry",
        title: "The client CA bundle is valid and not about to expire",
        group: Group::Pki,
        benchmarks: &[],
        expected: "every CA certificate valid now and for more than 30 days",
        remediation: "Rotate the cluster CA and distribute the new bundle to authentication.x509.clientCAFile before the old one expires",
        run: client_ca,
    },
];

fn serving(ctx: &Context) -> Outcome {
    let cert = match ctx.setting(&TLS_CERT_FILE) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if let Some(path) = Context::path_of(&cert) {
        return judge_file(ctx, &path, cert.source.to_string(), false);
    }
    let bootstrap = match ctx.bool(&SERVER_TLS_BOOTSTRAP) {
        Ok(b) => b.value,
        Err(e) => return e,
    };
    let (dir, _) = ctx.cert_dir();
    // Where the kubelet keeps what it made itself: the rotated serving certificate, or the
    // self-signed one it generates when given none.
    let path = if bootstrap {
        dir.join("kubelet-server-current.pem")
    } else {
        dir.join("kubelet.crt")
    };
    judge_file(ctx, &path, "--cert-dir".to_owned(), true)
}

fn client(ctx: &Context) -> Outcome {
    match ctx.kubeconfig() {
        None => Outcome::pass(
            "no --kubeconfig: the kubelet has no client certificate",
            "flags",
        ),
        Some(Err(reason)) => Outcome::error(reason, "flag --kubeconfig"),
        Some(Ok((dir, auth))) => {
            if !auth.uses_client_certificate() {
                return Outcome::pass(
                    "the kubeconfig authenticates with a token or exec plugin, not a client certificate",
                    "flag --kubeconfig",
                );
            }
            let mut outcomes: Vec<Outcome> = auth
                .client_certificates
                .iter()
                .map(|c| {
                    judge_file(
                        ctx,
                        &dir.join(c),
                        "kubeconfig client-certificate".to_owned(),
                        false,
                    )
                })
                .collect();
            for pem in &auth.embedded_certificates {
                outcomes.push(match crate::x509::certificates(pem) {
                    Ok(certs) => judge_certs(
                        &certs,
                        ctx.now,
                        "kubeconfig client-certificate-data",
                        "kubeconfig client-certificate-data",
                    ),
                    Err(e) => {
                        Outcome::error(format!("client-certificate-data: {e}"), "flag --kubeconfig")
                    }
                });
            }
            combine(&outcomes)
        }
    }
}

fn client_ca(ctx: &Context) -> Outcome {
    let s = match ctx.setting(&CLIENT_CA_FILE) {
        Ok(s) => s,
        Err(e) => return e,
    };
    match Context::path_of(&s) {
        Some(path) => judge_file(ctx, &path, s.source.to_string(), false),
        None => Outcome::warn(
            "no client CA file configured (see kubelet-client-ca-file)",
            s.source.to_string(),
        ),
    }
}

/// Reads the certificates of `path` and judges them. `may_be_absent`: a file the kubelet
/// makes itself, missing before its first start or its first approved CSR.
fn judge_file(ctx: &Context, path: &Path, source: String, may_be_absent: bool) -> Outcome {
    match ctx.read_in(ctx.fs(), path, MAX_CERT_BYTES) {
        Ok((resolved, text)) => match crate::x509::certificates(&text) {
            Ok(certs) => judge_certs(
                &certs,
                ctx.now,
                &resolved.path.display().to_string(),
                &source,
            ),
            Err(e) => Outcome::error(format!("{}: {e}", resolved.path.display()), source),
        },
        Err(FileProblem::Missing { path }) if may_be_absent => Outcome::warn(
            format!("{}: not found (not issued yet?)", path.display()),
            source,
        ),
        Err(problem) => Outcome::error(problem.to_string(), source),
    }
}

/// The worst of the certificates' verdicts; every one is described.
pub(crate) fn judge_certs(
    certs: &[CertInfo],
    now: SystemTime,
    label: &str,
    source: &str,
) -> Outcome {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut status = Status::Pass;
    let mut lines = Vec::new();
    for cert in certs {
        let left = cert.not_after - now;
        let (verdict, words) = if cert.not_before > now {
            (
                Status::Fail,
                format!("not valid before {}", when(cert.not_before)),
            )
        } else if left < 0 {
            (
                Status::Fail,
                format!(
                    "expired {} ({} days ago)",
                    when(cert.not_after),
                    -left / DAY
                ),
            )
        } else if left < EXPIRY_WARNING_DAYS * DAY {
            (
                Status::Warn,
                format!("expires {} (in {} days)", when(cert.not_after), left / DAY),
            )
        } else {
            (
                Status::Pass,
                format!("expires {} (in {} days)", when(cert.not_after), left / DAY),
            )
        };
        status = worst(status, verdict);
        lines.push(format!("{}: {words}", cert.subject));
    }
    Outcome::new(status, format!("{label}: {}", lines.join("; ")), source)
}

fn when(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(
        |_| format!("@{secs}"),
        |t| t.strftime("%Y-%m-%d").to_string(),
    )
}

fn combine(outcomes: &[Outcome]) -> Outcome {
    let status = outcomes.iter().map(|o| o.status).fold(Status::Pass, worst);
    let observed: Vec<String> = outcomes.iter().map(|o| o.observed.clone()).collect();
    let mut sources: Vec<String> = Vec::new();
    for o in outcomes {
        if !sources.contains(&o.source) {
            sources.push(o.source.clone());
        }
    }
    Outcome::new(status, observed.join("; "), sources.join(", "))
}
