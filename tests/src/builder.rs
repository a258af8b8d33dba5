//! The chainable builder of a [`SimNode`].

use crate::node::SimNode;
use crate::pod::PodSpec;

/// Builds a [`SimNode`]; see [`SimNode::builder`].
///
/// ```no_run
/// # use nodeward_testkit::{PodSpec, SimNode};
/// let node = SimNode::builder()
///     .pod(PodSpec::new("web"))
///     .pod(PodSpec::new("aws-node").namespace("kube-system").host_network(true))
///     .build();
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct SimNodeBuilder {
    pods: Vec<PodSpec>,
}

impl SimNodeBuilder {
    /// Adds a pod made during [`build`](Self::build); find it later with [`SimNode::pod`].
    pub fn pod(mut self, spec: PodSpec) -> Self {
        self.pods.push(spec);
        self
    }

    /// Creates the namespaces, links, IMDS server and cgroups, then the pods. Panics with
    /// the failing step; whatever was made by then is removed again.
    ///
    /// First removes what test processes that died without cleaning up left behind (see
    /// [`sweep_stale`](crate::sweep_stale)).
    #[must_use]
    pub fn build(self) -> SimNode {
        let node = SimNode::create();
        for spec in self.pods {
            let _ = node.add_pod(spec);
        }
        node
    }
}
