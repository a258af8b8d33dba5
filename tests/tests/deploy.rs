//! The manifests in deploy/ are Kubernetes objects a cluster accepts, and agree with the
//! binaries they run: every document parses as its typed API object with no field the
//! type does not know (a typo would be silently dropped by the API server), every overlay
//! renders with kustomize into such objects, the configs they ship are valid for the
//! binaries, and the agent's privileges are exactly the ones it needs.

#[path = "deploy/invariants.rs"]
mod invariants;
#[path = "deploy/manifests.rs"]
mod manifests;

use std::collections::BTreeSet;

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use serde_json::Value;

use self::{
    invariants::{
        AGENT_CAPABILITIES, check_agent, check_collector, check_collector_enrollment, check_rbac,
        find, validate_config,
    },
    manifests::{
        CRD_FILE, Doc, check_object, deploy_dir, kustomizations, manifest_docs, parse_docs,
        patch_files, relative, render,
    },
};

/// The base as written, without kustomize.
fn base_docs() -> Vec<Doc> {
    manifest_docs()
        .into_iter()
        .filter(|d| d.source.starts_with("base/"))
        .collect()
}

#[test]
fn every_manifest_is_a_valid_kubernetes_object() {
    for doc in manifest_docs() {
        check_object(&doc);
    }
}

#[test]
fn the_base_holds_its_invariants() {
    let docs = base_docs();
    check_agent(&docs);
    check_collector(&docs);
    check_collector_enrollment(&docs);
    check_rbac(&docs);
}

#[test]
fn every_capability_says_why() {
    let text = std::fs::read_to_string(deploy_dir().join("base/agent.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for cap in AGENT_CAPABILITIES {
        let at = lines
            .iter()
            .position(|l| *l == format!("- {cap}"))
            .unwrap_or_else(|| panic!("{cap} is not added in base/agent.yaml"));
        assert!(
            lines[at - 1].starts_with('#'),
            "base/agent.yaml: the line above {cap} must be the comment saying why"
        );
    }
}

/// Every file a kustomization names exists, and every manifest beside one is named by it
/// (a file nobody lists is never applied). The CRD may not have been generated yet.
#[test]
fn kustomizations_list_every_manifest() {
    let patches = patch_files();
    for (dir, k) in kustomizations() {
        let mut listed = BTreeSet::new();
        for key in ["resources", "components"] {
            for entry in k[key].as_array().cloned().unwrap_or_default() {
                let path = dir.join(entry.as_str().unwrap());
                let pending = path == deploy_dir().join(CRD_FILE);
                assert!(
                    path.exists() || pending,
                    "{}: {} is missing",
                    relative(&dir),
                    path.display()
                );
                listed.insert(path);
            }
        }
        listed.extend(
            patches
                .iter()
                .filter(|p| p.parent() == Some(dir.as_path()))
                .cloned(),
        );
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let yaml = path.extension().is_some_and(|e| e == "yaml");
            if yaml && !path.ends_with("kustomization.yaml") {
                assert!(
                    listed.contains(&path),
                    "{} is in no kustomization",
                    relative(&path)
                );
            }
        }
    }
}

/// Patches name objects the base has, so a rename cannot leave one applying to nothing.
#[test]
fn patches_name_objects_of_the_base() {
    let base: BTreeSet<(String, String)> = base_docs()
        .iter()
        .map(|d| {
            (
                d.value["kind"].as_str().unwrap().to_owned(),
                d.value["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for path in patch_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in parse_docs(&relative(&path), &text) {
            let id = (
                doc.value["kind"].as_str().unwrap_or_default().to_owned(),
                doc.value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            assert!(
                base.contains(&id),
                "{}: patches {id:?}, which the base does not have",
                doc.source
            );
        }
    }
}

/// The directories to `kubectl apply -k`.
fn overlays() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(deploy_dir().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    dirs.sort();
    for want in ["eks", "generic", "postgres", "cert-manager", "enrollment"] {
        assert!(dirs.iter().any(|d| d.ends_with(want)), "no overlay {want}");
    }
    dirs
}

#[test]
fn every_overlay_renders_valid_objects_that_hold_the_invariants() {
    for dir in overlays() {
        let docs = match render(&dir) {
            Ok(docs) => docs,
            Err(why) => {
                eprintln!("skipping kustomize build of {}: {why}", relative(&dir));
                continue;
            }
        };
        for doc in &docs {
            check_object(doc);
        }
        check_agent(&docs);
        check_collector(&docs);
        check_collector_enrollment(&docs);
        check_rbac(&docs);
        let crds = docs
            .iter()
            .filter(|d| d.value["kind"] == "CustomResourceDefinition");
        assert_eq!(
            crds.count(),
            1,
            "{}: the NodeHardeningPolicy CRD",
            relative(&dir)
        );
    }
}

#[test]
fn the_eks_overlay_blocks_imds_over_ipv6_and_allows_the_vpc_cni() {
    let Ok(docs) = render(&deploy_dir().join("overlays/eks")) else {
        eprintln!("skipping: the eks overlay cannot be rendered here");
        return;
    };
    let map: ConfigMap = find(&docs, "ConfigMap", "nodeward-agent").unwrap();
    let config = validate_config("nodeward-agent", &map, "agent.yaml");
    let cidrs: Vec<&str> = config["imds"]["blockedCidrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cidrs, ["169.254.169.254/32", "fd00:ec2::254/128"]);
    assert_eq!(config["hostRoot"], "/host");
    assert_eq!(config["imds"]["allow"][0]["serviceAccount"], "aws-node");
    let daemonset: DaemonSet = find(&docs, "DaemonSet", "nodeward-agent").unwrap();
    let affinity = serde_json::to_value(daemonset.spec.template.spec.unwrap().affinity).unwrap();
    assert!(
        affinity.to_string().contains("fargate"),
        "no agent on Fargate"
    );
}

#[test]
fn the_postgres_overlay_runs_replicas_without_the_sqlite_volume() {
    let Ok(docs) = render(&deploy_dir().join("overlays/postgres")) else {
        eprintln!("skipping: the postgres overlay cannot be rendered here");
        return;
    };
    assert!(
        !docs
            .iter()
            .any(|d| d.value["kind"] == "PersistentVolumeClaim")
    );
    let deployment = docs
        .iter()
        .find(|d| d.value["kind"] == "Deployment")
        .unwrap();
    assert_eq!(deployment.value["spec"]["replicas"], 2);
    let volumes = &deployment.value["spec"]["template"]["spec"]["volumes"];
    let config = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap();
    assert_eq!(config["secret"]["secretName"], "nodeward-collector-config");
}

#[test]
fn the_enrollment_overlay_keeps_the_agent_key_on_the_node_and_trusts_the_collector_ca() {
    let Ok(docs) = render(&deploy_dir().join("overlays/enrollment")) else {
        eprintln!("skipping: the enrollment overlay cannot be rendered here");
        return;
    };
    let map: ConfigMap = find(&docs, "ConfigMap", "nodeward-agent").unwrap();
    let config = validate_config("nodeward-agent", &map, "agent.yaml");
    let collector = &config["collector"];
    assert_eq!(
        collector["enrollment"]["tokenFile"],
        "/var/run/secrets/nodeward/token"
    );
    let daemonset: DaemonSet = find(&docs, "DaemonSet", "nodeward-agent").unwrap();
    let pod = daemonset.spec.template.spec.unwrap();
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    let volumes = pod.volumes.unwrap();
    let mount_of = |file: &str| {
        mounts
            .iter()
            .find(|m| file.starts_with(&format!("{}/", m.mount_path)))
            .and_then(|m| volumes.iter().find(|v| v.name == m.name))
            .unwrap_or_else(|| panic!("{file} is on no volume"))
            .clone()
    };
    // Written by the agent: on the node's state directory, which it may write.
    for key in ["certFile", "keyFile"] {
        let volume = mount_of(collector[key].as_str().unwrap());
        assert_eq!(volume.host_path.unwrap().path, "/var/lib/nodeward", "{key}");
    }
    // The collector's CA from a ConfigMap that may come later without holding the pod.
    let ca = mount_of(collector["caFile"].as_str().unwrap())
        .config_map
        .unwrap();
    assert_eq!(
        (ca.name.as_str(), ca.optional),
        ("nodeward-collector-ca", Some(true))
    );
}

#[test]
fn uninstall_removes_the_pins_the_agents_leave() {
    let docs: Vec<Doc> = manifest_docs()
        .into_iter()
        .filter(|d| d.source.starts_with("uninstall/"))
        .collect();
    let map: ConfigMap = find(&docs, "ConfigMap", "nodeward-uninstall").unwrap();
    let config = validate_config("nodeward-agent", &map, "agent.yaml");
    let agent: Value = serde_saphyr::from_str(
        &find::<ConfigMap>(&base_docs(), "ConfigMap", "nodeward-agent")
            .unwrap()
            .data
            .unwrap()["agent.yaml"],
    )
    .unwrap();
    assert_eq!(config["bpfPinPath"], agent["bpfPinPath"]);
    let daemonset: DaemonSet = find(&docs, "DaemonSet", "nodeward-uninstall").unwrap();
    let pod = daemonset.spec.template.spec.unwrap();
    let init = &pod.init_containers.unwrap()[0];
    assert_eq!(init.args.as_ref().unwrap()[0], "uninstall");
    let sc = init.security_context.clone().unwrap();
    assert_ne!(sc.privileged, Some(true));
    assert!(
        pod.tolerations
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()),
        "every node"
    );
}
