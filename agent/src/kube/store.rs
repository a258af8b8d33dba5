//! The pods the watcher has told us about, turned into snapshots.

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use tracing::{debug, info, warn};

use crate::pods::{PodMeta, PodSnapshot};

/// Applies watcher events; a relist is buffered and swapped in whole at `InitDone`, so
/// consumers never see a half-listed node and the last state stays in force until the
/// list completes.
#[derive(Default)]
pub struct PodStore {
    pods: HashMap<String, PodMeta>,
    /// Pods listed since `Init`, while a (re)list is under way.
    relist: Option<HashMap<String, PodMeta>>,
}

impl PodStore {
    /// How many pods are known (those of the last completed list, plus changes since).
    pub fn known(&self) -> usize {
        self.pods.len()
    }

    /// Applies one event; returns the snapshot to publish when what consumers see changed
    /// (status churn that leaves the metadata as it was publishes nothing).
    pub fn apply(&mut self, event: Event<Pod>) -> Option<PodSnapshot> {
        let changed = match event {
            Event::Init => {
                self.relist = Some(HashMap::new());
                false
            }
            Event::InitApply(pod) => {
                if let Some(meta) = convert(&pod) {
                    self.relist
                        .get_or_insert_default()
                        .insert(meta.uid.clone(), meta);
                }
                false
            }
            Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                info!(pods = listed.len(), "pods on this node listed");
                let changed = listed != self.pods;
                self.pods = listed;
                changed
            }
            Event::Apply(pod) => convert(&pod).is_some_and(|meta| {
                debug!(pod.uid = %meta.uid, pod.namespace = %meta.namespace, pod.name = %meta.name, "pod applied");
                if self.pods.get(&meta.uid) == Some(&meta) {
                    return false;
                }
                self.pods.insert(meta.uid.clone(), meta);
                true
            }),
            Event::Delete(pod) => pod.metadata.uid.as_ref().is_some_and(|uid| {
                debug!(pod.uid = %uid, "pod deleted");
                self.pods.remove(uid).is_some()
            }),
        };
        changed.then(|| Arc::new(self.pods.clone()))
    }
}

fn convert(pod: &Pod) -> Option<PodMeta> {
    PodMeta::try_from(pod)
        .inspect_err(|err| warn!(error = %err, "pod skipped"))
        .ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(uid: Option<&str>, name: &str, app: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: uid.map(str::to_owned),
                name: Some(name.into()),
                namespace: Some("n".into()),
                labels: Some([("app".to_owned(), app.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(snapshot: &PodSnapshot) -> Vec<(&str, &str)> {
        let mut names: Vec<_> = snapshot
            .values()
            .map(|p| (p.name.as_str(), p.labels["app"].as_str()))
            .collect();
        names.sort_unstable();
        names
    }

    fn list(store: &mut PodStore, pods: &[Pod]) -> Option<PodSnapshot> {
        assert!(store.apply(Event::Init).is_none());
        for pod in pods {
            assert!(
                store.apply(Event::InitApply(pod.clone())).is_none(),
                "a list is published whole"
            );
        }
        store.apply(Event::InitDone)
    }

    #[test]
    fn changes_are_published_and_no_ops_are_not() {
        let mut store = PodStore::default();
        let first = list(&mut store, &[pod(Some("u1"), "a", "x")]).expect("a listed pod");
        assert_eq!(names(&first), [("a", "x")]);
        assert!(
            store
                .apply(Event::Apply(pod(Some("u1"), "a", "x")))
                .is_none()
        );
        let relabelled = store
            .apply(Event::Apply(pod(Some("u1"), "a", "y")))
            .unwrap();
        assert_eq!(names(&relabelled), [("a", "y")]);
        let added = store
            .apply(Event::Apply(pod(Some("u2"), "b", "x")))
            .unwrap();
        assert_eq!(names(&added), [("a", "y"), ("b", "x")]);
        let deleted = store
            .apply(Event::Delete(pod(Some("u1"), "a", "y")))
            .unwrap();
        assert_eq!(names(&deleted), [("b", "x")]);
        assert!(
            store
                .apply(Event::Delete(pod(Some("u9"), "z", "x")))
                .is_none()
        );
        assert_eq!(
            names(&first),
            [("a", "x")],
            "published snapshots never change"
        );
    }

    #[test]
    fn a_relist_replaces_the_store_and_drops_what_it_does_not_list() {
        let mut store = PodStore::default();
        list(
            &mut store,
            &[pod(Some("u1"), "a", "x"), pod(Some("u2"), "b", "x")],
        );
        let relisted = list(&mut store, &[pod(Some("u2"), "b", "x")]).unwrap();
        assert_eq!(names(&relisted), [("b", "x")]);
        assert!(
            list(&mut store, &[pod(Some("u2"), "b", "x")]).is_none(),
            "an identical relist publishes nothing"
        );
    }

    #[test]
    fn an_interrupted_relist_starts_over() {
        let mut store = PodStore::default();
        store.apply(Event::Init);
        store.apply(Event::InitApply(pod(Some("u1"), "a", "x")));
        let snapshot = list(&mut store, &[pod(Some("u2"), "b", "x")]).unwrap();
        assert_eq!(names(&snapshot), [("b", "x")]);
    }

    #[test]
    fn pods_without_a_uid_are_skipped() {
        let mut store = PodStore::default();
        let snapshot = list(
            &mut store,
            &[pod(None, "a", "x"), pod(Some("u2"), "b", "x")],
        )
        .unwrap();
        assert_eq!(names(&snapshot), [("b", "x")]);
        assert!(store.apply(Event::Apply(pod(None, "a", "y"))).is_none());
        assert!(store.apply(Event::Delete(pod(None, "a", "y"))).is_none());
    }
}
