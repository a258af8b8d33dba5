//! `NodeHardeningPolicy` (`nodeward.io/v1alpha1`, cluster-scoped): IMDS and detection-rule
//! settings for the nodes its `nodeSelector` selects, applied live by the agent on each of
//! those nodes over its configuration file.
//!
//! The types mirror the agent configuration's `imds` and `rules` sections, camelCase, so a
//! policy reads like the config it changes. Values the agent must judge (CIDRs, the IMDS
//! mode, rule ids, selector operators) are kept as written rather than parsed here: one
//! malformed policy must become a status condition on that policy, not a deserialization
//! error that stops the agent's watch over every policy.
//!
//! [`crd_yaml`] renders the `CustomResourceDefinition`; `cargo xtask gen-crd` writes it to
//! `deploy/crd/nodehardeningpolicy.yaml`, and this crate's tests fail when the committed
//! file differs.

#![forbid(unsafe_code)]

mod types;

pub use self::types::*;

use kube::CustomResourceExt as _;

/// Where `cargo xtask gen-crd` writes the CRD, relative to the workspace root.
pub const CRD_PATH: &str = "deploy/crd/nodehardeningpolicy.yaml";

/// Why the CRD could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rendering the CustomResourceDefinition as YAML")]
    Yaml(#[source] serde_saphyr::SerializeError),
    #[error("rendering the CustomResourceDefinition as JSON")]
    Json(#[source] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `CustomResourceDefinition` as YAML, the same bytes for the same types: it goes through
/// a `serde_json::Value`, whose maps are sorted by key.
pub fn crd_yaml() -> Result<String> {
    let value = serde_json::to_value(NodeHardeningPolicy::crd()).map_err(Error::Json)?;
    let body = serde_saphyr::to_string(&value).map_err(Error::Yaml)?;
    Ok(format!(
        "# Generated from crd/src/types.rs by `cargo xtask gen-crd`; do not edit.\n{body}"
    ))
}
