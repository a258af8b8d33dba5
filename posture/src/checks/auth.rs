//! Who may talk to the kubelet: anonymous requests, authorization, client certificates.

use super::outcome::Outcome;
use super::{CheckDef, Context, Group};
use crate::config::Value;
use crate::config::settings::{ANONYMOUS_AUTH, AUTHORIZATION_MODE, CLIENT_CA_FILE};
use crate::fsview::MAX_CERT_BYTES;

pub(super) const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "kubelet-anonymous-auth",
        title: "Anonymous requests to the kubelet are refused",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.1", "cis-1.12:4.2.1"],
        expected: "authentication.anonymous.enabled: false (--anonymous-auth=false)",
        remediation: "Set authentication.anonymous.enabled: false in the kubelet config (or --anonymous-auth=false) and restart the kubelet",
        run: anonymous_auth,
    },
    CheckDef {
        id: "kubelet-authorization-mode",
        title: "Kubelet authorization is not AlwaysAllow",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.2", "cis-1.12:4.2.2"],
        expected: "authorization.mode: Webhook (--authorization-mode=Webhook)",
        remediation: "Set authorization.mode: Webhook and authentication.webhook.enabled: true in the kubelet config and restart the kubelet",
        run: authorization_mode,
    },
    CheckDef {
        id: "kubelet-client-ca-file",
        title: "Kubelet verifies client certificates against a CA",
        group: Group::Kubelet,
        benchmarks: &["cis-eks-1.8.0:3.2.3", "cis-1.12:4.2.3"],
        expected: "authentication.x509.clientCAFile set to a readable CA bundle",
        remediation: "Set authentication.x509.clientCAFile (or --client-ca-file) to the cluster CA bundle and restart the kubelet",
        run: client_ca_file,
    },
];

fn anonymous_auth(ctx: &Context) -> Outcome {
    match ctx.bool(&ANONYMOUS_AUTH) {
        Ok(s) => Outcome::judge(!s.value, ctx.describe(&s), s.source.to_string()),
        Err(e) => e,
    }
}

fn authorization_mode(ctx: &Context) -> Outcome {
    let s = match ctx.setting(&AUTHORIZATION_MODE) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let observed = ctx.describe(&s);
    let source = s.source.to_string();
    match &s.value {
        Value::Str(mode) if mode == "Webhook" => Outcome::pass(observed, source),
        Value::Str(mode) if mode == "AlwaysAllow" => Outcome::fail(observed, source),
        _ => Outcome::error(
            format!("{observed}: not a mode the kubelet accepts (AlwaysAllow, Webhook)"),
            source,
        ),
    }
}

fn client_ca_file(ctx: &Context) -> Outcome {
    let s = match ctx.setting(&CLIENT_CA_FILE) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let source = s.source.to_string();
    let Some(path) = Context::path_of(&s) else {
        return Outcome::fail(ctx.describe(&s), source);
    };
    match ctx.read_in(ctx.fs(), &path, MAX_CERT_BYTES) {
        Ok((resolved, text)) => match crate::x509::certificates(&text) {
            Ok(certs) => Outcome::pass(
                format!(
                    "{} ({} CA certificate(s))",
                    resolved.path.display(),
                    certs.len()
                ),
                source,
            ),
            Err(e) => Outcome::error(format!("{}: {e}", resolved.path.display()), source),
        },
        Err(problem) => Outcome::error(problem.to_string(), source),
    }
}
