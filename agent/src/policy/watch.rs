//! Two kube-rs watchers, on this node's `Node` object (for its labels) and on every
//! `NodeHardeningPolicy`, folded into one [`ClusterView`]. Errors never clear it: while the
//! API is unreachable the last view (so the last applied policies) stays in force, and a
//! relist is swapped in whole once complete.

use std::{collections::BTreeMap, future::Future, pin::Pin, time::Duration};

use anyhow::bail;
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, Resource, ResourceExt as _,
    runtime::{
        WatchStreamExt as _,
        watcher::{self, DefaultBackoff, Event, watcher},
    },
};
use nodeward_crd::NodeHardeningPolicy;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What the API says about this node and the policies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// This node's labels; `None` until the Node has been read (no policy applies before:
    /// a selector cannot be judged on labels not yet known).
    pub node_labels: Option<BTreeMap<String, String>>,
    /// Every policy, by name.
    pub policies: BTreeMap<String, NodeHardeningPolicy>,
}

type Events<K> = Pin<Box<dyn Stream<Item = Result<Event<K>, watcher::Error>> + Send>>;

/// Watches `node_name`'s Node and every policy; the task returns `Ok` when `token` is
/// cancelled.
pub fn watch_cluster(
    client: Client,
    node_name: &str,
    token: CancellationToken,
) -> (
    watch::Receiver<ClusterView>,
    impl Future<Output = anyhow::Result<()>> + Send + use<>,
) {
    let (tx, rx) = watch::channel(ClusterView::default());
    let nodes: Api<Node> = Api::all(client.clone());
    let policies: Api<NodeHardeningPolicy> = Api::all(client);
    // A field selector on metadata.name keeps the watch to this one Node's events rather
    // than every node's status heartbeats.
    let node_config = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
    let node = node_name.to_owned();
    let task = async move {
        info!(
            node,
            "watching NodeHardeningPolicies and this node's labels"
        );
        let mut view = ClusterView::default();
        let mut node_store = Named::<BTreeMap<String, String>>::default();
        let mut policy_store = Named::<NodeHardeningPolicy>::default();
        let mut node_events = events(&nodes, &node_config);
        let mut policy_events = events(&policies, &watcher::Config::default());
        let mut backoff = DefaultBackoff::default();
        loop {
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                event = node_events.next() => match event {
                    Some(Ok(event)) => {
                        // A Node that vanishes (deleted while draining) keeps its last
                        // labels: its policies stay in force to the end.
                        if node_store.apply(event, |n: &Node| Some(n.labels().clone()))
                            && let Some(labels) = node_store.items.get(&node)
                        {
                            view.node_labels = Some(labels.clone());
                            tx.send_replace(view.clone());
                        }
                    }
                    Some(Err(err)) => {
                        warn!(node, error = %err, "node watch failed; the last known labels stay in force until it recovers");
                        if refused_as_expired(&err) {
                            pause(&mut backoff, &token).await;
                            node_events = events(&nodes, &node_config);
                        }
                    }
                    None => bail!("the node watcher ended"),
                },
                event = policy_events.next() => match event {
                    Some(Ok(event)) => {
                        if policy_store.apply(event, |p: &NodeHardeningPolicy| Some(p.clone())) {
                            view.policies.clone_from(&policy_store.items);
                            tx.send_replace(view.clone());
                        }
                    }
                    Some(Err(err)) => {
                        warn!(error = %err, policies = view.policies.len(), "policy watch failed; the last known policies stay in force until it recovers");
                        if refused_as_expired(&err) {
                            pause(&mut backoff, &token).await;
                            policy_events = events(&policies, &watcher::Config::default());
                        }
                    }
                    None => bail!("the policy watcher ended"),
                },
            }
        }
    };
    (rx, task)
}

fn events<K>(api: &Api<K>, config: &watcher::Config) -> Events<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api.clone(), config.clone())
        .default_backoff()
        .boxed()
}

async fn pause(backoff: &mut DefaultBackoff, token: &CancellationToken) {
    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
    tokio::select! {
        () = token.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

/// As for the pod watcher (`kube/watch.rs`): kube-rs 5.0 retries a watch refused with HTTP
/// 410 forever from the same resourceVersion; a new watcher relists.
fn refused_as_expired(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410)
}

/// Objects by name, with a relist buffered and swapped in whole at `InitDone`.
struct Named<T> {
    items: BTreeMap<String, T>,
    relist: Option<BTreeMap<String, T>>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            relist: None,
        }
    }
}

impl<T: PartialEq> Named<T> {
    /// Applies one event (objects projected by `project`); whether `items` changed.
    fn apply<K: Resource>(&mut self, event: Event<K>, project: impl Fn(&K) -> Option<T>) -> bool {
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                if let Some(value) = project(&object) {
                    self.relist
                        .get_or_insert_default()
                        .insert(object.name_any(), value);
                }
                false
            }
            Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                let changed = listed != self.items;
                self.items = listed;
                changed
            }
            Event::Apply(object) => project(&object).is_some_and(|value| {
                let name = object.name_any();
                if self.items.get(&name) == Some(&value) {
                    return false;
                }
                self.items.insert(name, value);
                true
            }),
            Event::Delete(object) => self.items.remove(&object.name_any()).is_some(),
        }
    }
}
