use serde_json::{Value, json};

use super::*;

/// A pod as the API serves it; `patch` is merged over the top level of a minimal pod.
fn pod(patch: &Value) -> Pod {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"uid": "u1", "name": "web-7d4b9c-x2x9z", "namespace": "shop"},
        "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]},
    });
    for (key, value) in patch.as_object().expect("patch is an object") {
        pod[key] = value.clone();
    }
    serde_json::from_value(pod).expect("a valid Pod")
}

fn meta(patch: &Value) -> PodMeta {
    PodMeta::try_from(&pod(patch)).expect("the pod has a uid")
}

fn owned_by(kind: &str, name: &str, labels: &Value) -> Owner {
    meta(&json!({"metadata": {
        "uid": "u1", "name": "p", "namespace": "n", "labels": labels,
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "o0"},
            {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "o1", "controller": true},
        ],
    }}))
    .owner
    .expect("the controller is the owner")
}

fn owner(kind: &str, name: &str) -> Owner {
    Owner {
        kind: kind.into(),
        name: name.into(),
    }
}

#[test]
fn every_field_is_taken_from_the_pod() {
    let meta = meta(&json!({
        "metadata": {
            "uid": "u1", "name": "aws-node-x", "namespace": "kube-system",
            "labels": {"k8s-app": "aws-node"},
        },
        "spec": {
            "serviceAccountName": "aws-node",
            "hostNetwork": true,
            "initContainers": [{"name": "init", "image": "init:1"}],
            "containers": [{"name": "node", "image": "node:1"}, {"name": "side", "image": "side:1"}],
        },
        "status": {
            "podIPs": [{"ip": "10.0.3.7"}, {"ip": "2600:1f14::7"}, {"ip": "not-an-address"}],
            "initContainerStatuses": [{"name": "init", "image": "init:1", "imageID": "", "ready": false,
                "restartCount": 0, "containerID": "containerd://aaa"}],
            "containerStatuses": [{"name": "node", "image": "node:1", "imageID": "", "ready": true,
                "restartCount": 0, "containerID": "containerd://bbb"}],
        },
    }));
    assert_eq!(
        meta,
        PodMeta {
            uid: "u1".into(),
            name: "aws-node-x".into(),
            namespace: "kube-system".into(),
            service_account: "aws-node".into(),
            labels: [("k8s-app".to_owned(), "aws-node".to_owned())].into(),
            host_network: true,
            pod_ips: vec!["10.0.3.7".parse().unwrap(), "2600:1f14::7".parse().unwrap()],
            owner: None,
            containers: vec![
                ContainerMeta {
                    name: "node".into(),
                    image: "node:1".into(),
                    id: "bbb".into()
                },
                // Not started yet: no id, but the image is already known.
                ContainerMeta {
                    name: "side".into(),
                    image: "side:1".into(),
                    id: String::new()
                },
                ContainerMeta {
                    name: "init".into(),
                    image: "init:1".into(),
                    id: "aaa".into()
                },
            ],
        }
    );
}

#[test]
fn the_service_account_defaults_like_the_api_server() {
    assert_eq!(meta(&json!({})).service_account, "default");
    let empty = meta(&json!({"spec": {"containers": [], "serviceAccountName": ""}}));
    assert_eq!(empty.service_account, "default");
    assert!(!empty.host_network);
}

#[test]
fn pods_without_a_uid_are_refused() {
    for metadata in [
        json!({"name": "p", "namespace": "n"}),
        json!({"name": "p", "namespace": "n", "uid": ""}),
    ] {
        let err = PodMeta::try_from(&pod(&json!({ "metadata": metadata }))).unwrap_err();
        assert_eq!(err.to_string(), "pod n/p has no metadata.uid");
    }
}

#[test]
fn a_replica_set_owner_names_its_deployment() {
    let hash = json!({"pod-template-hash": "7d4b9c"});
    assert_eq!(
        owned_by("ReplicaSet", "web-7d4b9c", &hash),
        owner("Deployment", "web")
    );
    assert_eq!(
        owned_by("ReplicaSet", "api-v2-7d4b9c", &hash),
        owner("Deployment", "api-v2"),
        "only the hash suffix is cut"
    );
}

#[test]
fn a_replica_set_without_the_deployment_hash_stays_a_replica_set() {
    assert_eq!(
        owned_by("ReplicaSet", "web-7d4b9c", &json!({})),
        owner("ReplicaSet", "web-7d4b9c"),
        "no pod-template-hash label: made by hand"
    );
    assert_eq!(
        owned_by("ReplicaSet", "web", &json!({"pod-template-hash": "7d4b9c"})),
        owner("ReplicaSet", "web"),
        "the name does not end with the hash"
    );
    assert_eq!(
        owned_by(
            "ReplicaSet",
            "7d4b9c",
            &json!({"pod-template-hash": "7d4b9c"})
        ),
        owner("ReplicaSet", "7d4b9c"),
        "nothing would be left of the name"
    );
}

#[test]
fn other_controllers_are_named_as_they_are() {
    let hash = json!({"pod-template-hash": "7d4b9c"});
    for kind in ["DaemonSet", "StatefulSet", "Job"] {
        assert_eq!(
            owned_by(kind, "x-7d4b9c", &hash),
            owner(kind, "x-7d4b9c"),
            "{kind}"
        );
    }
    // A CronJob's Job is named `<cronjob>-<schedule time>`, which a hand-made Job can
    // look like too: it stays a Job.
    assert_eq!(
        owned_by("Job", "backup-29012345", &json!({})),
        owner("Job", "backup-29012345")
    );
}

#[test]
fn only_the_controlling_reference_is_the_owner() {
    let meta = meta(
        &json!({"metadata": {"uid": "u1", "name": "p", "namespace": "n",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "o0"}],
        }}),
    );
    assert_eq!(meta.owner, None);
    assert_eq!(
        owned_by("Node", "node-a", &json!({})),
        owner("Node", "node-a"),
        "static pods' mirror pods are controlled by their node"
    );
}

#[test]
fn runtime_prefixes_are_stripped_from_container_ids() {
    for (raw, id) in [
        ("containerd://4f3c9a", "4f3c9a"),
        ("cri-o://5e6f7a", "5e6f7a"),
        ("docker://0123ab", "0123ab"),
        ("4f3c9a", "4f3c9a"),
    ] {
        assert_eq!(runtime_id(raw), id, "{raw}");
    }
    let meta = meta(&json!({
        "spec": {
            "containers": [{"name": "web", "image": "web:1"}],
            "ephemeralContainers": [{"name": "debugger", "image": "busybox"}],
        },
        "status": {
            "containerStatuses": [{"name": "web", "image": "web:1", "imageID": "", "ready": true,
                "restartCount": 0, "containerID": "cri-o://5e6f7a"}],
            "ephemeralContainerStatuses": [{"name": "debugger", "image": "busybox", "imageID": "",
                "ready": false, "restartCount": 0, "containerID": "docker://0123ab"}],
        },
    }));
    let ids: Vec<(&str, &str)> = meta
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    assert_eq!(ids, [("web", "5e6f7a"), ("debugger", "0123ab")]);
}
