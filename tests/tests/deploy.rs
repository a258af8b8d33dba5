//! The manifests in deploy/ are Kubernetes objects a cluster accepts, and agree with the
//! binaries they run: every document parses as its typed API object with no field the
//! type does not know (a typo would be silently dropped by the API server), the configs
//! they ship are valid for the binaries, and ports and paths line up.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{
        ConfigMap, Namespace, PersistentVolumeClaim, ResourceQuota, Service, ServiceAccount,
    },
};
use nodeward_testkit::workspace_bin;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of every manifest, with its file name.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("read deploy/")
        .map(|e| e.expect("deploy/ entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/");
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).expect("read manifest");
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            docs.into_iter().map(move |d| (name.clone(), d))
        })
        .collect()
}

/// Parses `doc` as `T` and checks nothing was lost on the way back.
fn round_trip<T: DeserializeOwned + Serialize>(file: &str, doc: &Value) -> T {
    let typed: T =
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{file}: {e}\n{doc:#}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "{file}: fields the API does not know (misspelled?) would be dropped"
    );
    typed
}

fn find<T: DeserializeOwned + Serialize>(kind: &str, name: &str) -> T {
    let (file, doc) = documents()
        .into_iter()
        .find(|(_, d)| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"));
    round_trip(&file, &doc)
}

#[test]
fn every_manifest_is_a_valid_kubernetes_object() {
    for (file, doc) in documents() {
        match doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: a document without kind"))
        {
            "Namespace" => drop(round_trip::<Namespace>(&file, &doc)),
            "ResourceQuota" => drop(round_trip::<ResourceQuota>(&file, &doc)),
            "ServiceAccount" => drop(round_trip::<ServiceAccount>(&file, &doc)),
            "ConfigMap" => drop(round_trip::<ConfigMap>(&file, &doc)),
            "PersistentVolumeClaim" => drop(round_trip::<PersistentVolumeClaim>(&file, &doc)),
            "DaemonSet" => drop(round_trip::<DaemonSet>(&file, &doc)),
            "Deployment" => drop(round_trip::<Deployment>(&file, &doc)),
            "Service" => drop(round_trip::<Service>(&file, &doc)),
            other => panic!("{file}: kind {other} has no check here; add one"),
        }
        if doc["kind"] != "Namespace" {
            assert_eq!(
                doc["metadata"]["namespace"], "nodeward",
                "{file}: {}",
                doc["metadata"]["name"]
            );
        }
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let kustomization: Value = serde_saphyr::from_str(&text).unwrap();
    let mut listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut present: Vec<String> = documents().into_iter().map(|(f, _)| f).collect();
    present.dedup();
    present.sort();
    assert_eq!(listed, present);
}

/// The config a workload mounts, written to a file, checked by the binary's `validate`.
fn validate_shipped_config(binary: &str, map: &ConfigMap, key: &str) {
    let data = map
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("ConfigMap has no {key}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(key);
    std::fs::write(&path, data).unwrap();
    let out = Command::new(workspace_bin(binary))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{binary} refuses the shipped {key}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn agent_daemonset_runs_its_shipped_config_on_every_node() {
    let daemonset: DaemonSet = find("DaemonSet", "nodeward-agent");
    let pod = daemonset.spec.template.spec.unwrap();
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    assert_eq!(&args[..3], ["run", "--config", "/etc/nodeward/agent.yaml"]);
    let mounts = container.volume_mounts.clone().unwrap();
    let config_mount = mounts
        .iter()
        .find(|m| m.mount_path == "/etc/nodeward")
        .expect("config mount");
    let volumes = pod.volumes.unwrap();
    let config_volume = volumes
        .iter()
        .find(|v| v.name == config_mount.name)
        .unwrap();
    assert_eq!(
        config_volume.config_map.as_ref().unwrap().name,
        "nodeward-agent"
    );
    let cgroup = volumes.iter().find(|v| {
        v.host_path
            .as_ref()
            .is_some_and(|h| h.path == "/sys/fs/cgroup")
    });
    let cgroup_mount = mounts
        .iter()
        .find(|m| Some(&m.name) == cgroup.map(|c| &c.name))
        .expect("host cgroup2 mounted");

    let map: ConfigMap = find("ConfigMap", "nodeward-agent");
    validate_shipped_config("nodeward-agent", &map, "agent.yaml");
    let agent_config = &map.data.unwrap()["agent.yaml"];
    assert!(
        agent_config.contains(&format!("cgroupRoot: {}", cgroup_mount.mount_path)),
        "cgroupRoot is the host mount"
    );

    let bpffs = volumes.iter().find(|v| {
        v.host_path
            .as_ref()
            .is_some_and(|h| h.path == "/sys/fs/bpf")
    });
    let bpffs_mount = mounts
        .iter()
        .find(|m| Some(&m.name) == bpffs.map(|b| &b.name))
        .expect("the node's bpffs mounted");
    assert!(
        agent_config.contains(&format!("bpfPinPath: {}/", bpffs_mount.mount_path)),
        "pins go to the node's bpffs, so enforcement outlives the pod"
    );

    let env = container.env.clone().unwrap();
    let node_name = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(
        node_name
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );
    assert!(
        pod.tolerations
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
    );
}

#[test]
fn collector_service_reaches_the_port_its_config_listens_on() {
    let map: ConfigMap = find("ConfigMap", "nodeward-collector");
    validate_shipped_config("nodeward-collector", &map, "collector.yaml");
    let deployment: Deployment = find("Deployment", "nodeward-collector");
    let container = deployment.spec.template.spec.unwrap().containers[0].clone();
    let port = container.ports.unwrap()[0].clone();
    assert!(
        map.data.unwrap()["collector.yaml"]
            .contains(&format!("listen: 0.0.0.0:{}", port.container_port))
    );
    let service: Service = find("Service", "nodeward-collector");
    let service_port = service.spec.unwrap().ports.unwrap()[0].clone();
    assert_eq!(
        serde_json::to_value(service_port.target_port).unwrap(),
        Value::from(port.name.unwrap()),
        "the Service targets the collector's named port"
    );
    let agent_config = find::<ConfigMap>("ConfigMap", "nodeward-agent")
        .data
        .unwrap()["agent.yaml"]
        .clone();
    assert!(
        agent_config.contains(&format!(
            "endpoint: http://nodeward-collector.nodeward.svc:{}",
            service_port.port
        )),
        "agents are pointed at the collector Service"
    );
}
