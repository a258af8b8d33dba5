//! Mode and ownership of the files that configure the kubelet: its systemd unit, its
//! kubeconfig, its config file and drop-ins, and the client CA bundle. Each is the file the
//! kubelet actually uses, judged on a symlink's target, with its directories considered.

use std::path::{Path, PathBuf};

use super::judge::{Rule, Target, judge};
use super::outcome::Outcome;
use super::{CheckDef, Context, Group};
use crate::config::Source;
use crate::config::settings::CLIENT_CA_FILE;

/// Where systemd loads units from, most specific first (`systemd.unit(5)`).
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

macro_rules! file_check {
    ($id:literal, $title:literal, $benchmarks:expr, $expected:literal, $remediation:literal, $run:ident) => {
        CheckDef {
            id: $id,
            title: $title,
            group: Group::Files,
            benchmarks: $benchmarks,
            expected: $expected,
            remediation: $remediation,
            run: $run,
        }
    };
}

pub(super) const CHECKS: &[CheckDef] = &[
    file_check!(
        "kubelet-service-file-permissions",
        "Kubelet systemd unit files are 600 or stricter",
        &["cis-1.12:4.1.1"],
        "mode 600 or more restrictive, directories root-only writable",
        "chmod 600 the kubelet unit file and its drop-ins (systemctl cat kubelet lists them)",
        service_mode
    ),
    file_check!(
        "kubelet-service-file-ownership",
        "Kubelet systemd unit files are owned by root:root",
        &["cis-1.12:4.1.2"],
        "root:root, directories owned by root",
        "chown root:root the kubelet unit file and its drop-ins (systemctl cat kubelet lists them)",
        service_owner
    ),
    file_check!(
        "kubelet-kubeconfig-permissions",
        "Kubelet kubeconfig is 600 or stricter",
        &["cis-1.12:4.1.5"],
        "mode 600 or more restrictive",
        "chmod 600 the file given to the kubelet's --kubeconfig",
        kubeconfig_mode_600
    ),
    file_check!(
        "kubelet-kubeconfig-permissions-644",
        "Kubelet kubeconfig is 644 or stricter",
        &["cis-eks-1.8.0:3.1.1"],
        "mode 644 or more restrictive",
        "chmod 644 (or stricter) the file given to the kubelet's --kubeconfig",
        kubeconfig_mode_644
    ),
    file_check!(
        "kubelet-kubeconfig-ownership",
        "Kubelet kubeconfig is owned by root:root",
        &["cis-eks-1.8.0:3.1.2", "cis-1.12:4.1.6"],
        "root:root",
        "chown root:root the file given to the kubelet's --kubeconfig",
        kubeconfig_owner
    ),
    file_check!(
        "kubelet-config-permissions",
        "Kubelet config file and drop-ins are 600 or stricter",
        &["cis-1.12:4.1.9"],
        "mode 600 or more restrictive",
        "chmod 600 the kubelet's --config file and every *.conf under --config-dir",
        config_mode_600
    ),
    file_check!(
        "kubelet-config-permissions-644",
        "Kubelet config file and drop-ins are 644 or stricter",
        &["cis-eks-1.8.0:3.1.3"],
        "mode 644 or more restrictive",
        "chmod 644 (or stricter) the kubelet's --config file and every *.conf under --config-dir",
        config_mode_644
    ),
    file_check!(
        "kubelet-config-ownership",
        "Kubelet config file and drop-ins are owned by root:root",
        &["cis-eks-1.8.0:3.1.4", "cis-1.12:4.1.10"],
        "root:root",
        "chown root:root the kubelet's --config file and every *.conf under --config-dir",
        config_owner
    ),
    file_check!(
        "kubelet-client-ca-permissions",
        "Client CA file is 644 or stricter",
        &["cis-1.12:4.1.7"],
        "mode 644 or more restrictive",
        "chmod 644 the file named by authentication.x509.clientCAFile (--client-ca-file)",
        client_ca_mode
    ),
    file_check!(
        "kubelet-client-ca-ownership",
        "Client CA file is owned by root:root",
        &["cis-1.12:4.1.8"],
        "root:root",
        "chown root:root the file named by authentication.x509.clientCAFile (--client-ca-file)",
        client_ca_owner
    ),
];

fn service_mode(ctx: &Context) -> Outcome {
    with_targets(ctx, service_targets(ctx), Rule::ModeWithin(0o600))
}

fn service_owner(ctx: &Context) -> Outcome {
    with_targets(ctx, service_targets(ctx), Rule::RootOwned)
}

fn kubeconfig_mode_600(ctx: &Context) -> Outcome {
    with_targets(ctx, kubeconfig_targets(ctx), Rule::ModeWithin(0o600))
}

fn kubeconfig_mode_644(ctx: &Context) -> Outcome {
    with_targets(ctx, kubeconfig_targets(ctx), Rule::ModeWithin(0o644))
}

fn kubeconfig_owner(ctx: &Context) -> Outcome {
    with_targets(ctx, kubeconfig_targets(ctx), Rule::RootOwned)
}

fn config_mode_600(ctx: &Context) -> Outcome {
    with_targets(ctx, config_targets(ctx), Rule::ModeWithin(0o600))
}

fn config_mode_644(ctx: &Context) -> Outcome {
    with_targets(ctx, config_targets(ctx), Rule::ModeWithin(0o644))
}

fn config_owner(ctx: &Context) -> Outcome {
    with_targets(ctx, config_targets(ctx), Rule::RootOwned)
}

fn client_ca_mode(ctx: &Context) -> Outcome {
    with_targets(ctx, client_ca_targets(ctx), Rule::ModeWithin(0o644))
}

fn client_ca_owner(ctx: &Context) -> Outcome {
    with_targets(ctx, client_ca_targets(ctx), Rule::RootOwned)
}

/// Files to judge, or the verdict when there are none.
type Targets = Result<Vec<Target>, Outcome>;

fn with_targets(ctx: &Context, targets: Targets, rule: Rule) -> Outcome {
    match targets {
        Ok(targets) => judge(ctx, ctx.fs(), &targets, rule),
        Err(outcome) => outcome,
    }
}

/// The unit systemd runs the kubelet from, and every drop-in that changes it.
fn service_targets(ctx: &Context) -> Targets {
    let unit = ctx
        .kubelet
        .unit
        .clone()
        .unwrap_or_else(|| "kubelet.service".to_owned());
    let mut targets = Vec::new();
    let mut main_found = false;
    for dir in UNIT_DIRS {
        let dir = Path::new(dir);
        if !main_found && ctx.facts(&dir.join(&unit)).is_ok() {
            // The first directory holding the unit wins; later copies are shadowed.
            main_found = true;
            targets.push(Target::new(dir.join(&unit), "systemd unit"));
        }
        let drop_ins = dir.join(format!("{unit}.d"));
        if let Ok((_, names)) = ctx.list(&drop_ins) {
            targets.extend(
                names
                    .iter()
                    .filter(|n| Path::new(n).extension().is_some_and(|e| e == "conf"))
                    .map(|n| Target::new(drop_ins.join(n), "systemd drop-in")),
            );
        }
    }
    if targets.is_empty() {
        return Err(Outcome::warn(
            format!("no {unit} unit file or drop-in in {}", UNIT_DIRS.join(", ")),
            "systemd unit directories",
        ));
    }
    Ok(targets)
}

fn kubeconfig_targets(ctx: &Context) -> Targets {
    let mut targets = Vec::new();
    if let Some(path) = ctx.kubeconfig_path() {
        targets.push(Target::new(path, "flag --kubeconfig"));
    }
    // The bootstrap kubeconfig holds a bootstrap token; it is often deleted once used.
    if let Some(path) = ctx
        .config
        .flags
        .last("bootstrap-kubeconfig")
        .filter(|p| !p.is_empty())
    {
        targets.push(Target::new(path, "flag --bootstrap-kubeconfig").optional());
    }
    if targets.is_empty() {
        return Err(Outcome::pass(
            "no --kubeconfig: the kubelet runs standalone, without API server credentials",
            "flags",
        ));
    }
    Ok(targets)
}

fn config_targets(ctx: &Context) -> Targets {
    let targets: Vec<Target> = ctx
        .config
        .layers
        .iter()
        .map(|layer| match &layer.source {
            Source::Config(path) => Target::new(path.clone(), "flag --config"),
            Source::DropIn(path) => Target::new(path.clone(), "drop-in"),
            other => Target::new(PathBuf::new(), other.to_string()),
        })
        .collect();
    if targets.is_empty() {
        return Err(Outcome::pass(
            "no --config and no --config-dir: no kubelet config file is used",
            "flags",
        ));
    }
    Ok(targets)
}

fn client_ca_targets(ctx: &Context) -> Targets {
    let s = ctx.setting(&CLIENT_CA_FILE)?;
    match Context::path_of(&s) {
        Some(path) => Ok(vec![Target::new(path, s.source.to_string())]),
        None => Err(Outcome::warn(
            "no client CA file configured (see kubelet-client-ca-file)",
            s.source.to_string(),
        )),
    }
}
