//! Which node a service account token speaks for, as SPIRE's `k8s_psat` node attestor
//! decides it: the API server says (`TokenReview`, with our audience) that the token is
//! valid, whose it is and which pod it is bound to; that pod, read back from the API,
//! must still be the same pod (same UID), scheduled on a node and not finished. The node
//! is the pod's `spec.nodeName`, which only the scheduler sets and a pod cannot change.
//!
//! A token that is not bound to a pod (a legacy Secret token, or one from `kubectl create
//! token` without `--bound-object-kind Pod`) is refused: it would say nothing about the
//! node.

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec, UserInfo},
    core::v1::Pod,
};
use kube::{Api, Client, api::PostParams};

use super::EnrollError;

const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// Who presented the token, once the API server and the pod agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
}

/// Checks tokens against one API server for one service account and audience.
#[derive(Clone)]
pub struct Attestor {
    client: Client,
    audience: String,
    namespace: String,
    service_account: String,
}

impl Attestor {
    pub fn new(client: Client, audience: &str, (namespace, service_account): (&str, &str)) -> Self {
        Self {
            client,
            audience: audience.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        }
    }

    /// The node `token`'s pod runs on, or why the token does not prove one.
    pub async fn attest(&self, token: &str) -> Result<Attested, EnrollError> {
        let user = self.review(token).await?;
        let username = user.username.unwrap_or_default();
        let want = format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        );
        if username != want {
            return Err(EnrollError::WrongServiceAccount { username });
        }
        let extra = user.extra.unwrap_or_default();
        let one = |key: &str| {
            extra.get(key).and_then(|values| match values.as_slice() {
                [value] if !value.is_empty() => Some(value.clone()),
                _ => None,
            })
        };
        let (Some(pod), Some(pod_uid)) = (one(EXTRA_POD_NAME), one(EXTRA_POD_UID)) else {
            return Err(EnrollError::NotBoundToPod);
        };
        let node = self.pod_node(&pod, &pod_uid).await?;
        // Kubernetes >= 1.30 binds the node into pod tokens too; when it did, it must agree.
        if let Some(token_node) = one(EXTRA_NODE_NAME)
            && token_node != node
        {
            return Err(EnrollError::NodeMismatch {
                pod,
                token_node,
                pod_node: node,
            });
        }
        Ok(Attested {
            node,
            namespace: self.namespace.clone(),
            pod,
            pod_uid,
        })
    }

    /// The `TokenReview`'s user, when the API server authenticated the token for our
    /// audience.
    async fn review(&self, token: &str) -> Result<UserInfo, EnrollError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| EnrollError::Api {
                what: "TokenReview",
                source,
            })?;
        let status = reviewed.status.unwrap_or_default();
        let audience_ok = status
            .audiences
            .as_ref()
            .is_none_or(|audiences| audiences.contains(&self.audience));
        match (status.authenticated, status.user) {
            (Some(true), Some(user)) if audience_ok => Ok(user),
            _ => Err(EnrollError::TokenRejected {
                reason: status
                    .error
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "not authenticated".to_owned()),
            }),
        }
    }

    /// The node of the live pod `name` whose UID is `uid`.
    async fn pod_node(&self, name: &str, uid: &str) -> Result<String, EnrollError> {
        let pod = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(|source| EnrollError::Api {
                what: "pod",
                source,
            })?
            .ok_or_else(|| EnrollError::PodGone {
                pod: name.to_owned(),
            })?;
        // The same name may now be another pod: a token outliving its pod must not
        // speak for the pod's successor (or its node).
        let live_uid = pod.metadata.uid.clone().unwrap_or_default();
        if live_uid != uid {
            return Err(EnrollError::PodReplaced {
                pod: name.to_owned(),
                token_uid: uid.to_owned(),
                live_uid,
            });
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if !matches!(phase.as_str(), "Running" | "Pending") {
            return Err(EnrollError::PodNotActive {
                pod: name.to_owned(),
                phase,
            });
        }
        pod.spec
            .and_then(|s| s.node_name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| EnrollError::PodNotScheduled {
                pod: name.to_owned(),
            })
    }
}
