//! What must hold of the agent's and the collector's objects wherever they are applied
//! from: the base as written and every overlay as rendered.

use std::{collections::BTreeSet, process::Command};

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{ConfigMap, Container, PodSpec, Service, Volume, VolumeMount},
    networking::v1::NetworkPolicy,
    rbac::v1::{ClusterRole, PolicyRule, Role},
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nodeward_testkit::workspace_bin;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::manifests::{Doc, round_trip};

/// Exactly what the agent runs with; deploy/base/agent.yaml says why for each.
pub const AGENT_CAPABILITIES: [&str; 5] = [
    "BPF",
    "PERFMON",
    "NET_ADMIN",
    "DAC_READ_SEARCH",
    "SYS_PTRACE",
];

pub fn find<T: DeserializeOwned + Serialize>(docs: &[Doc], kind: &str, name: &str) -> Option<T> {
    docs.iter()
        .find(|d| d.value["kind"] == kind && d.value["metadata"]["name"] == name)
        .map(round_trip)
}

fn need<T: DeserializeOwned + Serialize>(docs: &[Doc], kind: &str, name: &str) -> T {
    find(docs, kind, name).unwrap_or_else(|| {
        let from = docs.first().map_or("", |d| d.source.as_str());
        panic!("no {kind} {name} in {from}")
    })
}

/// The config a workload mounts, written to a file, checked by the binary's `validate`,
/// and returned parsed.
pub fn validate_config(binary: &str, map: &ConfigMap, key: &str) -> Value {
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
    serde_saphyr::from_str(data).unwrap()
}

fn host_path_mount<'a>(pod: &'a PodSpec, c: &'a Container, host: &str) -> Option<&'a VolumeMount> {
    let volume = volumes(pod)
        .iter()
        .find(|v| v.host_path.as_ref().is_some_and(|h| h.path == host))?;
    mounts(c).iter().find(|m| m.name == volume.name)
}

fn volumes(pod: &PodSpec) -> &[Volume] {
    pod.volumes.as_deref().unwrap_or_default()
}

fn mounts(c: &Container) -> &[VolumeMount] {
    c.volume_mounts.as_deref().unwrap_or_default()
}

fn port_of(addr: &Value) -> i32 {
    addr.as_str()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("not host:port: {addr}"))
}

fn named_port(c: &Container, name: &str) -> i32 {
    c.ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("container {} has no port {name}", c.name))
        .container_port
}

fn probe_path(probe: Option<&k8s_openapi::api::core::v1::Probe>, port: &str) -> String {
    let get = probe
        .and_then(|p| p.http_get.as_ref())
        .expect("an httpGet probe");
    assert_eq!(get.port, IntOrString::String(port.to_owned()));
    get.path.clone().unwrap_or_default()
}

/// Requests and limits on every container.
fn has_resources(c: &Container) {
    let r = c
        .resources
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no resources", c.name));
    let requests = r.requests.as_ref().expect("requests");
    assert!(
        requests.contains_key("cpu") && requests.contains_key("memory"),
        "{}",
        c.name
    );
    assert!(
        r.limits.as_ref().is_some_and(|l| l.contains_key("memory")),
        "{}",
        c.name
    );
}

/// The agent DaemonSet and its config: on every node, rolled one node at a time, with
/// its privileges and a config that points where the mounts are.
pub fn check_agent(docs: &[Doc]) {
    let daemonset: DaemonSet = need(docs, "DaemonSet", "nodeward-agent");
    let spec = daemonset.spec;
    let update = spec.update_strategy.unwrap();
    assert_eq!(update.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(
        update.rolling_update.unwrap().max_unavailable,
        Some(IntOrString::Int(1))
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.host_pid,
        Some(true),
        "posture reads the kubelet's /proc"
    );
    if pod.host_network == Some(true) {
        // components/node-guard: the node's network namespace, and cluster DNS kept.
        assert_eq!(
            pod.dns_policy.as_deref(),
            Some("ClusterFirstWithHostNet"),
            "a hostNetwork agent must still resolve the collector's Service"
        );
        check_collector_admits_host_network_agents(docs);
    }
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert!(
        pod.tolerations
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()),
        "tolerates every taint"
    );
    for container in &pod.containers {
        has_resources(container);
    }
    check_agent_privileges(&pod);
    check_agent_config(docs, &pod);
}

/// Agents on the host network have no pod IP: the collector's policy must admit them by
/// address, next to the SOC clients.
fn check_collector_admits_host_network_agents(docs: &[Doc]) {
    let policy: NetworkPolicy = need(docs, "NetworkPolicy", "nodeward-collector");
    let rules = policy.spec.and_then(|s| s.ingress).unwrap_or_default();
    let grpc = rules
        .iter()
        .find(|r| {
            r.ports
                .iter()
                .flatten()
                .any(|p| p.port == Some(IntOrString::String("grpc".to_owned())))
        })
        .expect("an ingress rule for the collector's gRPC port");
    assert!(
        grpc.from
            .iter()
            .flatten()
            .any(|peer| peer.ip_block.is_some()),
        "hostNetwork agents are admitted by address"
    );
}

/// Not privileged, exactly its capabilities, read-only host mounts but for bpffs and its
/// state.
fn check_agent_privileges(pod: &PodSpec) {
    let c = &pod.containers[0];
    let sc = c.security_context.clone().expect("a securityContext");
    assert_ne!(sc.privileged, Some(true), "never privileged");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let added: BTreeSet<&str> = caps
        .add
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(added, AGENT_CAPABILITIES.into_iter().collect());

    // Host paths: read-only, except the node's bpffs (pins) and the agent's own state.
    let writable: BTreeSet<&str> = ["/sys/fs/bpf", "/var/lib/nodeward"].into();
    for volume in volumes(pod) {
        let Some(host) = &volume.host_path else {
            continue;
        };
        let mount = mounts(c).iter().find(|m| m.name == volume.name);
        let mount = mount.unwrap_or_else(|| panic!("hostPath {} is not mounted", host.path));
        assert_ne!(
            mount.mount_propagation.as_deref(),
            Some("Bidirectional"),
            "needs privileged"
        );
        if !writable.contains(host.path.as_str()) {
            assert_eq!(
                mount.read_only,
                Some(true),
                "hostPath {} must be read-only",
                host.path
            );
        }
    }
}

/// The config it runs with, and that it matches the mounts, the probes and the
/// downward API.
fn check_agent_config(docs: &[Doc], pod: &PodSpec) {
    let c = &pod.containers[0];
    let env = c.env.as_deref().unwrap_or_default();
    let node_name = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    let field = node_name
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("fieldRef");
    assert_eq!(field.field_path, "spec.nodeName");

    let args = c.args.clone().unwrap();
    let config_mount = mounts(c).iter().find(|m| {
        volumes(pod).iter().any(|v| {
            v.name == m.name
                && v.config_map
                    .as_ref()
                    .is_some_and(|cm| cm.name == "nodeward-agent")
        })
    });
    let config_mount = config_mount.expect("the agent ConfigMap is mounted");
    assert_eq!(
        &args[..3],
        [
            "run",
            "--config",
            &format!("{}/agent.yaml", config_mount.mount_path)
        ]
    );
    let map: ConfigMap = need(docs, "ConfigMap", "nodeward-agent");
    let config = validate_config("nodeward-agent", &map, "agent.yaml");
    check_agent_token(pod, &config);
    let at = |host: &str| {
        host_path_mount(pod, c, host)
            .unwrap_or_else(|| panic!("{host} mounted"))
            .mount_path
            .clone()
    };
    assert_eq!(config["cgroupRoot"], at("/sys/fs/cgroup").as_str());
    assert_eq!(config["hostRoot"], at("/").as_str());
    let pins = config["bpfPinPath"].as_str().unwrap();
    assert!(
        pins.starts_with(&format!("{}/", at("/sys/fs/bpf"))),
        "pins on the node's bpffs"
    );
    let spool = config["collector"]["spoolDir"].as_str().unwrap();
    assert!(
        spool.starts_with(&format!("{}/", at("/var/lib/nodeward"))),
        "spool on the node"
    );
    assert_eq!(config["collector"]["tls"], "mutual");
    assert_eq!(config["pods"]["source"], "kubernetes");
    assert_eq!(config["startupTaint"]["key"], "nodeward.io/agent-not-ready");
    assert_eq!(
        port_of(&config["httpListen"]),
        named_port(c, "http-metrics")
    );
    assert_eq!(
        probe_path(c.liveness_probe.as_ref(), "http-metrics"),
        "/healthz"
    );
    assert_eq!(
        probe_path(c.readiness_probe.as_ref(), "http-metrics"),
        "/readyz"
    );
}

/// The agent's RBAC: the least verbs, and the admission policy that narrows the node patch.
pub fn check_rbac(docs: &[Doc]) {
    let role: ClusterRole = need(docs, "ClusterRole", "nodeward-agent");
    let rules = grants(role.rules.unwrap());
    let want: BTreeSet<(String, String, String)> = [
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "nodes", "get"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "nodes", "patch"),
        ("nodeward.io", "nodehardeningpolicies", "get"),
        ("nodeward.io", "nodehardeningpolicies", "list"),
        ("nodeward.io", "nodehardeningpolicies", "watch"),
        ("nodeward.io", "nodehardeningpolicies/status", "patch"),
    ]
    .into_iter()
    .map(|(g, r, v)| (g.to_owned(), r.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(rules, want);
    let policy = docs
        .iter()
        .find(|d| d.value["kind"] == "ValidatingAdmissionPolicy")
        .expect("the admission policy narrowing the node patch");
    let text = policy.value.to_string();
    assert!(text.contains("system:serviceaccount:nodeward:nodeward-agent"));
    assert!(text.contains("nodeward.io/agent-not-ready"));
    assert!(text.contains("authentication.kubernetes.io/node-name"));
    assert!(
        docs.iter()
            .any(|d| d.value["kind"] == "ValidatingAdmissionPolicyBinding"
                && d.value["spec"]["policyName"] == policy.value["metadata"]["name"])
    );
}

/// Every (API group, resource, verb) `rules` grant.
fn grants(rules: Vec<PolicyRule>) -> BTreeSet<(String, String, String)> {
    rules
        .into_iter()
        .flat_map(|r| {
            let groups = r.api_groups.unwrap_or_default();
            let resources = r.resources.unwrap_or_default();
            assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
            groups.into_iter().flat_map(move |g| {
                let verbs = r.verbs.clone();
                resources.clone().into_iter().flat_map(move |res| {
                    let g = g.clone();
                    verbs
                        .clone()
                        .into_iter()
                        .map(move |v| (g.clone(), res.clone(), v))
                })
            })
        })
        .collect()
}

fn grant(g: &str, r: &str, v: &str) -> BTreeSet<(String, String, String)> {
    [(g.to_owned(), r.to_owned(), v.to_owned())].into()
}

/// The agent's token for the collector: a projected service account token for the
/// collector's audience, short-lived, mounted read-only where the config looks for it.
fn check_agent_token(pod: &PodSpec, config: &Value) {
    let c = &pod.containers[0];
    let volume = volumes(pod)
        .iter()
        .find(|v| v.name == "collector-token")
        .expect("the collector-token volume");
    let sources = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.clone())
        .expect("a projected volume");
    let token = sources
        .iter()
        .find_map(|s| s.service_account_token.clone())
        .expect("a service account token");
    assert_eq!(token.audience.as_deref(), Some("nodeward-collector"));
    assert_eq!(token.expiration_seconds, Some(3600));
    let mount = mounts(c)
        .iter()
        .find(|m| m.name == volume.name)
        .expect("the token is mounted");
    assert_eq!(mount.read_only, Some(true));
    if let Some(file) = config["collector"]["enrollment"]["tokenFile"].as_str() {
        assert_eq!(file, format!("{}/{}", mount.mount_path, token.path));
    }
}

/// With enrollment, the collector may create token reviews and read pods in nodeward,
/// nothing else, and mounts the enrollment CA; without it, it has no API access at all.
pub fn check_collector_enrollment(docs: &[Doc]) {
    let deployment: Deployment = need(docs, "Deployment", "nodeward-collector");
    let pod = deployment.spec.template.spec.unwrap();
    let enrollment = find::<ConfigMap>(docs, "ConfigMap", "nodeward-collector").map(|map| {
        let config: Value = serde_saphyr::from_str(&map.data.unwrap()["collector.yaml"]).unwrap();
        config["enrollment"].clone()
    });
    let on = enrollment.as_ref().is_some_and(|e| !e.is_null());
    let cluster: Option<ClusterRole> = find(docs, "ClusterRole", "nodeward-collector-enrollment");
    let namespaced: Option<Role> = find(docs, "Role", "nodeward-collector-enrollment");
    let ca_volume = volumes(&pod).iter().find(|v| {
        v.secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some("nodeward-enrollment-ca"))
    });
    if !on {
        assert!(
            cluster.is_none() && namespaced.is_none(),
            "RBAC without enrollment"
        );
        assert!(
            ca_volume.is_none(),
            "the enrollment CA key mounted without enrollment"
        );
        return;
    }
    let cluster = cluster.expect("the collector's ClusterRole for TokenReviews");
    assert_eq!(
        grants(cluster.rules.unwrap()),
        grant("authentication.k8s.io", "tokenreviews", "create")
    );
    let namespaced = namespaced.expect("the collector's Role for pods");
    assert_eq!(namespaced.metadata.namespace.as_deref(), Some("nodeward"));
    assert_eq!(grants(namespaced.rules.unwrap()), grant("", "pods", "get"));
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let binding = docs
            .iter()
            .find(|d| {
                d.value["kind"] == kind
                    && d.value["metadata"]["name"] == "nodeward-collector-enrollment"
            })
            .unwrap_or_else(|| panic!("no {kind}"));
        assert_eq!(binding.value["subjects"][0]["name"], "nodeward-collector");
    }
    assert_eq!(pod.automount_service_account_token, Some(true));
    let ca_volume = ca_volume.expect("the enrollment CA Secret is mounted");
    let mount = mounts(&pod.containers[0])
        .iter()
        .find(|m| m.name == ca_volume.name)
        .expect("mounted");
    assert_eq!(mount.read_only, Some(true));
    let enrollment = enrollment.unwrap();
    for key in ["caCertFile", "caKeyFile"] {
        let file = enrollment[key].as_str().unwrap();
        assert!(
            file.starts_with(&format!("{}/", mount.mount_path)),
            "{key}: {file}"
        );
    }
}

/// The collector: non-root, its Service and probes on the ports its config listens on,
/// the agents pointed at it, and a `NetworkPolicy` that opens exactly those ports.
pub fn check_collector(docs: &[Doc]) {
    let deployment: Deployment = need(docs, "Deployment", "nodeward-collector");
    let pod = deployment.spec.template.spec.unwrap();
    assert_eq!(
        pod.security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root),
        Some(true)
    );
    let c = &pod.containers[0];
    has_resources(c);
    let grpc = named_port(c, "grpc");
    let http = named_port(c, "http-metrics");
    assert_eq!(
        probe_path(c.liveness_probe.as_ref(), "http-metrics"),
        "/healthz"
    );
    assert_eq!(
        probe_path(c.readiness_probe.as_ref(), "http-metrics"),
        "/readyz"
    );
    // The postgres overlay takes the config from a Secret the admin writes.
    if let Some(map) = find::<ConfigMap>(docs, "ConfigMap", "nodeward-collector") {
        let config = validate_config("nodeward-collector", &map, "collector.yaml");
        assert_eq!(port_of(&config["listen"]), grpc);
        assert_eq!(port_of(&config["httpListen"]), http);
        assert_eq!(config["tls"], "mutual");
    }
    let service: Service = need(docs, "Service", "nodeward-collector");
    let ports = service.spec.unwrap().ports.unwrap();
    let targets: Vec<(i32, IntOrString)> = ports
        .iter()
        .map(|p| (p.port, p.target_port.clone().unwrap()))
        .collect();
    assert_eq!(
        targets,
        [
            (grpc, IntOrString::String("grpc".into())),
            (http, IntOrString::String("http-metrics".into()))
        ]
    );
    let agent: Value = find::<ConfigMap>(docs, "ConfigMap", "nodeward-agent")
        .map(|m| serde_saphyr::from_str(&m.data.unwrap()["agent.yaml"]).unwrap())
        .unwrap();
    assert_eq!(
        agent["collector"]["endpoint"],
        format!("https://nodeward-collector.nodeward.svc:{grpc}").as_str(),
        "agents are pointed at the collector Service"
    );
    let policy: NetworkPolicy = need(docs, "NetworkPolicy", "nodeward-collector");
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.pod_selector.and_then(|s| s.match_labels).unwrap()["app.kubernetes.io/name"],
        "nodeward-collector"
    );
    let opened: BTreeSet<String> = spec
        .ingress
        .unwrap()
        .into_iter()
        .flat_map(|rule| rule.ports.unwrap_or_default())
        .map(|p| match p.port.expect("a port") {
            IntOrString::String(name) => name,
            IntOrString::Int(n) => n.to_string(),
        })
        .collect();
    assert_eq!(
        opened,
        ["grpc".to_owned(), "http-metrics".to_owned()].into()
    );
}
