//! What neither benchmark covers on a node: the kubelet's private keys readable by root
//! only, and the directories holding its PKI and configuration writable by root only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::judge::{Rule, Target, judge};
use super::outcome::Outcome;
use super::{CheckDef, Context, Group};
use crate::config::Source;
use crate::config::settings::TLS_PRIVATE_KEY_FILE;
use crate::fsview::{FileProblem, MAX_CERT_BYTES};

pub(super) const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "kubelet-private-key-permissions",
        title: "Kubelet private keys are readable by root only",
        group: Group::Pki,
        benchmarks: &[],
        expected: "every private key (tlsPrivateKeyFile, kubeconfig client-key, keys in the PKI directory) mode 600 or stricter, owned by root",
        remediation: "chmod 600 and chown root the kubelet's key files (in /var/lib/kubelet/pki or --cert-dir, and tlsPrivateKeyFile)",
        run: private_keys,
    },
    CheckDef {
        id: "kubelet-pki-dir-permissions",
        title: "The kubelet's PKI directory is writable by root only",
        group: Group::Pki,
        benchmarks: &[],
        expected: "--cert-dir (default /var/lib/kubelet/pki) owned by root, not writable by group/others, nor any directory above it",
        remediation: "chown root and chmod go-w the kubelet's PKI directory (/var/lib/kubelet/pki or --cert-dir) and the directories above it",
        run: pki_dir,
    },
    CheckDef {
        id: "kubelet-config-dir-permissions",
        title: "Directories holding the kubelet's configuration are writable by root only",
        group: Group::Files,
        benchmarks: &[],
        expected: "the directories of --config, --config-dir and --kubeconfig owned by root, not writable by group/others",
        remediation: "chown root and chmod go-w the directories holding the kubelet's config file, drop-ins and kubeconfig",
        run: config_dirs,
    },
];

fn private_keys(ctx: &Context) -> Outcome {
    let mut targets = Vec::new();
    match ctx.setting(&TLS_PRIVATE_KEY_FILE) {
        Ok(s) => {
            if let Some(path) = Context::path_of(&s) {
                targets.push(Target::new(path, "tlsPrivateKeyFile"));
            }
        }
        Err(e) => return e,
    }
    if let Some(Ok((dir, auth))) = ctx.kubeconfig() {
        targets.extend(
            auth.client_keys
                .iter()
                .map(|k| Target::new(dir.join(k), "kubeconfig client-key")),
        );
    }
    let (cert_dir, _) = ctx.cert_dir();
    match keys_in(ctx, &cert_dir) {
        Ok(found) => targets.extend(found),
        // The kubelet creates its default PKI directory at start; a missing one only
        // means there is nothing in it to protect.
        Err(FileProblem::Missing { .. })
            if cert_dir == Path::new(super::context::DEFAULT_CERT_DIR) => {}
        Err(problem) => return Outcome::error(problem.to_string(), "--cert-dir"),
    }
    if targets.is_empty() {
        return Outcome::warn(
            format!(
                "no private key found: no tlsPrivateKeyFile, no kubeconfig client-key, none in {}",
                cert_dir.display()
            ),
            "files",
        );
    }
    judge(ctx, ctx.fs(), &dedupe(ctx, targets), Rule::RootOnly)
}

/// Files in the PKI directory that hold a private key (by content, not by name: the
/// rotated `kubelet-client-current.pem` holds the certificate and the key together).
fn keys_in(ctx: &Context, dir: &Path) -> Result<Vec<Target>, FileProblem> {
    let (_, names) = ctx.list(dir)?;
    let mut keys = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match ctx.read_in(ctx.fs(), &path, MAX_CERT_BYTES) {
            Ok((_, text)) if crate::x509::holds_private_key(&text) => {
                keys.push(Target::new(path, "PKI directory"));
            }
            Ok(_) | Err(FileProblem::NotAFile { .. }) => {}
            // A key-looking file we cannot read is judged (and reported) rather than skipped.
            Err(_) if looks_like_key(&name) => keys.push(Target::new(path, "PKI directory")),
            Err(_) => {}
        }
    }
    Ok(keys)
}

fn looks_like_key(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e == "key" || e == "pem")
}

/// One target per file: `kubelet-client-current.pem` and the file it links to are one key.
fn dedupe(ctx: &Context, targets: Vec<Target>) -> Vec<Target> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for target in targets {
        let key = ctx
            .fs()
            .resolve(&target.path)
            .map_or_else(|_| target.path.clone(), |r| r.path);
        if seen.insert(key) {
            out.push(target);
        }
    }
    out
}

fn pki_dir(ctx: &Context) -> Outcome {
    let (dir, source) = ctx.cert_dir();
    if source == Source::Default
        && matches!(ctx.fs().resolve(&dir), Err(FileProblem::Missing { .. }))
    {
        ctx.facts(&dir).ok();
        return Outcome::warn(
            format!(
                "{}: not found (the kubelet creates it at start)",
                dir.display()
            ),
            "default",
        );
    }
    judge(
        ctx,
        ctx.fs(),
        &[Target::new(dir, source.to_string())],
        Rule::RootDir,
    )
}

fn config_dirs(ctx: &Context) -> Outcome {
    let mut dirs: Vec<(PathBuf, &str)> = Vec::new();
    for layer in &ctx.config.layers {
        if let Source::Config(path) = &layer.source
            && let Some(parent) = path.parent()
        {
            dirs.push((parent.to_path_buf(), "directory of --config"));
        }
    }
    if let Some(dir) = ctx
        .config
        .flags
        .last("config-dir")
        .filter(|d| !d.is_empty())
    {
        dirs.push((
            crate::config::layers::named_path(ctx.fs(), Path::new(dir)),
            "--config-dir",
        ));
    }
    if let Some(path) = ctx.kubeconfig_path() {
        let named = crate::config::layers::named_path(ctx.fs(), &path);
        if let Some(parent) = named.parent() {
            dirs.push((parent.to_path_buf(), "directory of --kubeconfig"));
        }
    }
    let mut seen = BTreeSet::new();
    let targets: Vec<Target> = dirs
        .into_iter()
        .filter(|(d, _)| !d.as_os_str().is_empty() && seen.insert(d.clone()))
        .map(|(d, why)| Target::new(d, why))
        .collect();
    if targets.is_empty() {
        return Outcome::pass(
            "no --config, --config-dir or --kubeconfig: no configuration directory",
            "flags",
        );
    }
    judge(ctx, ctx.fs(), &targets, Rule::RootDir)
}
