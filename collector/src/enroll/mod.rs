//! Agent enrollment: an agent with no certificate yet gets one for its node, the way
//! SPIRE's `k8s_psat` node attestation works. The agent sends a CSR (its key never leaves
//! the node) and its pod's projected service account token; [`attest`] finds the node
//! that token's pod runs on through the API server, and [`authority`] signs a short-lived
//! client certificate naming that node and nothing else. Every issuance and refusal is
//! logged and counted (`nodeward_enrollments_total{outcome}`).
//!
//! What the collector trusts: the API server's `TokenReview` and its pods. What it holds:
//! a CA key, so the enrollment CA should be a dedicated intermediate (docs/certificates.md).

mod attest;
mod authority;
mod config;
mod service;

pub use self::{
    attest::{Attested, Attestor},
    authority::Authority,
    config::EnrollmentConfig,
    service::EnrollmentApi,
};

use tonic::Status;

/// Why a certificate was not issued. Each maps to a gRPC status the agent can act on:
/// `UNAUTHENTICATED`/`PERMISSION_DENIED`/`INVALID_ARGUMENT` will not change by retrying
/// with the same token and CSR; `UNAVAILABLE` may.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("no service account token in the request")]
    NoToken,
    #[error("the API server did not authenticate the token: {reason}")]
    TokenRejected { reason: String },
    #[error("the token belongs to {username:?}, not the agents' service account")]
    WrongServiceAccount { username: String },
    #[error("the token is not bound to a pod (use the pod's projected service account token)")]
    NotBoundToPod,
    #[error("the token's pod {pod} no longer exists")]
    PodGone { pod: String },
    #[error("the token's pod {pod} was replaced (uid {token_uid}, now {live_uid})")]
    PodReplaced {
        pod: String,
        token_uid: String,
        live_uid: String,
    },
    #[error("the token's pod {pod} is {phase:?}, not running")]
    PodNotActive { pod: String, phase: String },
    #[error("the token's pod {pod} is not scheduled on a node")]
    PodNotScheduled { pod: String },
    #[error("the token names node {token_node:?} but its pod {pod} runs on {pod_node:?}")]
    NodeMismatch {
        pod: String,
        token_node: String,
        pod_node: String,
    },
    #[error("unusable CSR: {0}")]
    BadCsr(String),
    #[error("asking the Kubernetes API for the {what}")]
    Api {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Internal(String),
    #[error("too many certificate requests at once")]
    Busy,
}

impl EnrollError {
    /// The metric label and log field for this outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::NoToken => "no_token",
            Self::TokenRejected { .. } => "token_rejected",
            Self::WrongServiceAccount { .. } => "wrong_service_account",
            Self::NotBoundToPod => "token_not_bound",
            Self::PodGone { .. } => "pod_gone",
            Self::PodReplaced { .. } => "pod_replaced",
            Self::PodNotActive { .. } => "pod_not_active",
            Self::PodNotScheduled { .. } => "pod_not_scheduled",
            Self::NodeMismatch { .. } => "node_mismatch",
            Self::BadCsr(_) => "bad_csr",
            Self::Api { .. } => "api_error",
            Self::Internal(_) => "internal_error",
            Self::Busy => "busy",
        }
    }

    /// What the agent is told. Failures on the collector's side say no more than that:
    /// the details are in its log.
    pub fn status(&self) -> Status {
        match self {
            Self::NoToken | Self::TokenRejected { .. } => Status::unauthenticated(self.to_string()),
            Self::BadCsr(_) => Status::invalid_argument(self.to_string()),
            Self::Api { .. } => {
                Status::unavailable("the collector could not reach the Kubernetes API; retry")
            }
            Self::Internal(_) => Status::internal("the collector cannot issue certificates"),
            Self::Busy => Status::resource_exhausted(
                "too many certificate requests at once; retry with backoff",
            ),
            Self::WrongServiceAccount { .. }
            | Self::NotBoundToPod
            | Self::PodGone { .. }
            | Self::PodReplaced { .. }
            | Self::PodNotActive { .. }
            | Self::PodNotScheduled { .. }
            | Self::NodeMismatch { .. } => Status::permission_denied(self.to_string()),
        }
    }
}

/// Every outcome label, so each series exists (at 0) from the start.
pub const OUTCOMES: [&str; 14] = [
    "issued",
    "no_token",
    "token_rejected",
    "wrong_service_account",
    "token_not_bound",
    "pod_gone",
    "pod_replaced",
    "pod_not_active",
    "pod_not_scheduled",
    "node_mismatch",
    "bad_csr",
    "api_error",
    "internal_error",
    "busy",
];

#[cfg(test)]
mod tests;
