//! Who may call what. With TLS, the client certificate says who the caller is (see
//! `nodeward_runtime::tls`): only a node's agent may call `AgentService`, and only for
//! the node its certificate names; only SOC clients may call `SocService`, which is
//! read-only. Without TLS (`tls: disabled`, logged at start) everyone is trusted.
//!
//! With enrollment on, the handshake lets clients without a certificate through (they
//! have none yet), so these checks are what refuses them every API but
//! `AgentEnrollmentService`, whose credential is the service account token (`enroll`).

use nodeward_runtime::tls::{Peer, peer_identity};
use tonic::{Request, Status};
use tracing::warn;

/// Whether the listener requires client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Mutual,
    Disabled,
}

impl Auth {
    /// The caller's identity, or `None` without TLS.
    fn peer<T>(self, request: &Request<T>, api: &str) -> Result<Option<Peer>, Status> {
        if self == Self::Disabled {
            return Ok(None);
        }
        let addr = remote(request);
        let Some(cert) = request
            .peer_certs()
            .and_then(|certs| certs.first().cloned())
        else {
            warn!(addr, api, "refused: no client certificate");
            return Err(Status::unauthenticated("a client certificate is required"));
        };
        peer_identity(&cert).map(Some).map_err(|reason| {
            warn!(
                addr,
                api, reason, "refused: the certificate names no nodeward identity"
            );
            Status::unauthenticated(reason)
        })
    }

    /// For `AgentService`: the node name the caller may report for (`None` without TLS:
    /// any). A SOC client is refused.
    pub fn agent<T>(self, request: &Request<T>) -> Result<Option<String>, Status> {
        match self.peer(request, "AgentService")? {
            None => Ok(None),
            Some(Peer::Node(node)) => Ok(Some(node)),
            Some(peer @ Peer::Soc(_)) => {
                warn!(addr = remote(request), %peer, "refused: a SOC client called the agent API");
                Err(Status::permission_denied(
                    "SOC clients may only read (SocService)",
                ))
            }
        }
    }

    /// For `SocService`: refuses agents (a compromised node must not read the fleet's
    /// findings).
    pub fn soc<T>(self, request: &Request<T>) -> Result<(), Status> {
        match self.peer(request, "SocService")? {
            None | Some(Peer::Soc(_)) => Ok(()),
            Some(peer @ Peer::Node(_)) => {
                warn!(addr = remote(request), %peer, "refused: an agent called the SOC API");
                Err(Status::permission_denied(
                    "agents may only report (AgentService)",
                ))
            }
        }
    }
}

/// Checks a Hello's node name against what the certificate allows.
pub fn hello_allowed(allowed: Option<&str>, claimed: &str, addr: &str) -> Result<(), Status> {
    match allowed {
        Some(node) if node != claimed => {
            warn!(
                addr,
                certificate_node = node,
                claimed_node = claimed,
                "refused: an agent reported for another node"
            );
            Err(Status::permission_denied(format!(
                "this certificate is for node {node:?}, not {claimed:?}"
            )))
        }
        _ => Ok(()),
    }
}

fn remote<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_may_only_report_for_itself() {
        assert!(hello_allowed(Some("node-a"), "node-a", "x").is_ok());
        assert!(hello_allowed(None, "node-b", "x").is_ok());
        let err = hello_allowed(Some("node-a"), "node-b", "x").unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("node-a"), "{}", err.message());
    }

    #[test]
    fn without_a_certificate_mutual_auth_refuses() {
        let request = Request::new(());
        let err = Auth::Mutual.agent(&request).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(Auth::Mutual.soc(&request).is_err());
        assert_eq!(Auth::Disabled.agent(&request).unwrap(), None);
        assert!(Auth::Disabled.soc(&request).is_ok());
    }
}
