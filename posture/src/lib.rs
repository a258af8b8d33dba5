//! nodeward's posture scanner: the kubelet's effective configuration and the node files it
//! uses, checked against CIS Kubernetes 1.12 and CIS EKS 1.8.0 worker-node items and what
//! neither benchmark covers (private keys, PKI directories, certificate expiry).
//!
//! The kubelet is found through `/proc` (or named by pid, or described offline by its command
//! line and a host root); its flags, `--config` file, `--config-dir` drop-ins and defaults
//! are merged as the kubelet merges them, every value keeping where it came from; every path
//! it names is resolved as the kubelet sees it. A file that cannot be judged makes the
//! checks that depend on it `error`, never `pass`.

#![forbid(unsafe_code)]

mod checks;
pub mod cli;
pub mod config;
mod deps;
mod error;
pub mod fsview;
pub mod kubeconfig;
pub mod process;
mod report;
mod scan;
pub mod x509;

pub use checks::{CheckInfo, CheckResult, Group, Status, catalogue};
pub use deps::{Dependency, DependencyKind};
pub use error::ScanError;
pub use report::render_table;
pub use scan::{KubeletSource, PostureReport, ScanOptions, scan, scan_at};
