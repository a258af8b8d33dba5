//! The checks: each has a stable id, the benchmark items it implements, and a function
//! that judges the node from the effective configuration and the files.

mod auth;
mod context;
mod expiry;
mod files;
mod hardening;
mod judge;
mod network;
mod outcome;
mod pki;
mod proxy;
mod tls;

use serde::{Deserialize, Serialize};

pub(crate) use context::{Context, ProxyView};
use outcome::Outcome;
pub use outcome::Status;

/// Which part of the node a check is about; the table groups by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// The kubelet's effective configuration.
    Kubelet,
    /// Mode and ownership of the files the kubelet reads.
    Files,
    /// Keys, certificates and their directories.
    Pki,
    /// kube-proxy.
    KubeProxy,
}

impl Group {
    /// A heading for people.
    pub fn heading(self) -> &'static str {
        match self {
            Self::Kubelet => "Kubelet configuration",
            Self::Files => "Configuration files",
            Self::Pki => "Kubelet PKI",
            Self::KubeProxy => "kube-proxy",
        }
    }
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Stable identifier, e.g. `kubelet-anonymous-auth`.
    pub id: String,
    /// What is checked, in a few words.
    pub title: String,
    /// The part of the node.
    pub group: Group,
    /// Benchmark items implemented, as `"<benchmark>:<item>"`.
    pub benchmarks: Vec<String>,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub observed: String,
    /// What should have been found.
    pub expected: String,
    /// Where the judged value came from (`flag --x`, `config FILE`, `drop-in FILE`,
    /// `default`, or the file judged).
    pub source: String,
    /// One line saying how to fix it.
    pub remediation: String,
}

/// A check's definition.
pub(crate) struct CheckDef {
    pub id: &'static str,
    pub title: &'static str,
    pub group: Group,
    pub benchmarks: &'static [&'static str],
    pub expected: &'static str,
    pub remediation: &'static str,
    pub run: fn(&Context) -> Outcome,
}

/// A check as the catalogue lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInfo {
    /// Stable identifier.
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
    /// Benchmark items implemented.
    pub benchmarks: &'static [&'static str],
}

fn definitions() -> impl Iterator<Item = &'static CheckDef> {
    [
        auth::CHECKS,
        network::CHECKS,
        tls::CHECKS,
        hardening::CHECKS,
        files::CHECKS,
        pki::CHECKS,
        expiry::CHECKS,
        proxy::CHECKS,
    ]
    .into_iter()
    .flatten()
}

/// Every check the scanner runs, in report order.
pub fn catalogue() -> Vec<CheckInfo> {
    definitions()
        .map(|d| CheckInfo {
            id: d.id,
            title: d.title,
            benchmarks: d.benchmarks,
        })
        .collect()
}

/// Runs every check.
pub(crate) fn run_all(ctx: &Context) -> Vec<CheckResult> {
    definitions()
        .map(|d| {
            let outcome = (d.run)(ctx);
            CheckResult {
                id: d.id.to_owned(),
                title: d.title.to_owned(),
                group: d.group,
                benchmarks: d.benchmarks.iter().map(|b| (*b).to_owned()).collect(),
                status: outcome.status,
                observed: outcome.observed,
                expected: d.expected.to_owned(),
                source: outcome.source,
                remediation: d.remediation.to_owned(),
            }
        })
        .collect()
}
