//! Continuous posture end to end, with real processes: an agent whose `hostRoot` is an EKS
//! Amazon Linux 2023 node tree finds a (fake) kubelet through that root's `proc`, scans
//! it, and the collector shows the node's failing checks; an edit that turns anonymous
//! auth on reaches a SOC subscriber as a `posture-regression` finding and the fleet view.

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nodeward_testkit::{
    SimNode,
    certs::{CertsOptions, write_certs},
    require_root,
    stack::{AgentProcess, AgentSpec, CollectorProcess, TailProcess},
    wait_until, workspace_bin,
};
use serde_json::{Value, json};

/// The kubelet config nodeadm writes on AL2023, as the kubelet (and the scanner) sees it.
const CONFIG: &str = "/etc/kubernetes/kubelet/config.json";
const ANONYMOUS: &str = "kubelet-anonymous-auth";
/// First scan, transport and storage; the agent polls `/proc` every 2 s and debounces
/// file events by 500 ms, so this leaves a wide margin.
const POSTURE_DEADLINE: Duration = Duration::from_secs(30);

/// What nodeadm configures: secure authentication and authorization, but neither a
/// seccomp default nor a PID limit, and EKS's cipher list with two RSA key-exchange
/// suites. `anonymous` is the one setting the test changes.
fn kubelet_config(anonymous: bool) -> Value {
    json!({
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "address": "0.0.0.0",
        "authentication": {
            "anonymous": {"enabled": anonymous},
            "webhook": {"cacheTTL": "2m0s", "enabled": true},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}
        },
        "clusterDomain": "cluster.local",
        "readOnlyPort": 0,
        "cgroupDriver": "systemd",
        "featureGates": {"RotateKubeletServerCertificate": true},
        "protectKernelDefaults": true,
        "serverTLSBootstrap": true,
        "tlsCipherSuites": [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_RSA_WITH_AES_128_GCM_SHA256"
        ],
        "clusterDNS": ["10.100.0.10"],
        "maxPods": 29
    })
}

/// What fails on this node, sorted: nodeadm sets neither a seccomp default nor a PID
/// limit and allows RSA key exchange; its 0644 config and kubeconfig satisfy CIS EKS but
/// not CIS Kubernetes 1.12, which asks for 0600. Authentication, authorization, the
/// read-only port and the client CA all pass.
const EXPECTED_FAILING: &[&str] = &[
    "kubelet-config-permissions",
    "kubelet-kubeconfig-permissions",
    "kubelet-pod-pids-limit",
    "kubelet-seccomp-default",
    "kubelet-tls-cipher-suites",
];

const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /etc/kubernetes/pki/ca.crt\n    server: https://ABC.gr7.us-west-2.eks.amazonaws.com\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: kubelet\n  name: kubelet\ncurrent-context: kubelet\nusers:\n- name: kubelet\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: /usr/bin/aws-iam-authenticator\n      args: [token, -i, demo]\n";
const UNIT: &str = "[Unit]\nDescription=kubelet\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\n[Install]\nWantedBy=multi-user.target\n";

/// The kubelet's command line as nodeadm starts it.
const KUBELET_ARGS: &[&str] = &[
    "--config=/etc/kubernetes/kubelet/config.json",
    "--config-dir=/etc/kubernetes/kubelet/config.json.d",
    "--kubeconfig=/var/lib/kubelet/kubeconfig",
    "--image-credential-provider-bin-dir=/etc/eks/image-credential-provider",
    "--image-credential-provider-config=/etc/eks/image-credential-provider/config.json",
    "--node-ip=192.168.1.11",
    "--cloud-provider=external",
    "--v=2",
];

/// A node's `/` in a temporary directory, with an empty `proc` that shows only the
/// processes the test puts there.
struct NodeRoot {
    dir: tempfile::TempDir,
}

impl NodeRoot {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nodeward-posture-e2e-")
            .tempdir()
            .expect("a temporary node root");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod root");
        let root = Self { dir };
        root.mkdir("/proc", 0o555);
        root
    }

    fn path(&self, node_path: &str) -> PathBuf {
        self.dir.path().join(node_path.trim_start_matches('/'))
    }

    /// A directory and its missing parents, each with `mode`.
    fn mkdir(&self, node_path: &str, mode: u32) -> &Self {
        let mut current = self.dir.path().to_path_buf();
        for part in Path::new(node_path.trim_start_matches('/')).components() {
            current.push(part);
            if !current.exists() {
                fs::create_dir(&current)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", current.display()));
                fs::set_permissions(&current, fs::Permissions::from_mode(mode))
                    .unwrap_or_else(|e| panic!("chmod {}: {e}", current.display()));
            }
        }
        self
    }

    fn file(&self, node_path: &str, mode: u32, content: impl AsRef<[u8]>) -> &Self {
        if let Some(parent) = Path::new(node_path).parent() {
            self.mkdir(&parent.to_string_lossy(), 0o755);
        }
        let path = self.path(node_path);
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        self
    }

    fn json(&self, node_path: &str, mode: u32, doc: &Value) -> &Self {
        self.file(node_path, mode, serde_json::to_vec_pretty(doc).unwrap())
    }

    /// Replaces a file the way editors and config management do: a new file renamed
    /// over the old one, same mode.
    fn replace_json(&self, node_path: &str, doc: &Value) {
        let path = self.path(node_path);
        let temp = path.with_extension("new");
        fs::write(&temp, serde_json::to_vec_pretty(doc).unwrap())
            .unwrap_or_else(|e| panic!("write {}: {e}", temp.display()));
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o644)).expect("chmod");
        fs::rename(&temp, &path).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
    }

    /// Copies a host file (a program or a library) to the same path in the tree.
    fn copy_from_host(&self, host_path: &str, node_path: &str) {
        let bytes = fs::read(host_path).unwrap_or_else(|e| panic!("read {host_path}: {e}"));
        self.file(node_path, 0o755, bytes);
    }

    /// Makes a process visible in the tree's `proc`, as the host's `/proc` would show it.
    fn show(&self, pid: u32) {
        let link = self.path(&format!("/proc/{pid}"));
        symlink(format!("/proc/{pid}"), &link)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    }
}

/// An EKS Amazon Linux 2023 node as nodeadm leaves it, with the kubelet binary at
/// `/usr/bin/kubelet`: a copy of `/bin/sh` with the libraries it needs, so that it can
/// run chrooted into the tree and see it as its `/`.
fn eks_al2023(scratch: &Path) -> NodeRoot {
    let node = NodeRoot::new();
    let certs = scratch.join("cluster-pki");
    write_certs(
        &certs,
        &CertsOptions {
            nodes: vec!["kubelet".into()],
            ..CertsOptions::default()
        },
    )
    .expect("issuing the cluster's certificates");
    let read = |name: &str| fs::read(certs.join(name)).unwrap();
    let mut serving = read("kubelet.crt");
    serving.extend(read("kubelet.key"));
    node.file("/etc/kubernetes/pki/ca.crt", 0o644, read("ca.crt"))
        .json(CONFIG, 0o644, &kubelet_config(false))
        .mkdir("/etc/kubernetes/kubelet/config.json.d", 0o755)
        .json(
            "/etc/kubernetes/kubelet/config.json.d/00-nodeadm.conf",
            0o644,
            &json!({
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "maxPods": 17,
                "providerID": "aws:///us-west-2a/i-0123456789abcdef0"
            }),
        )
        .file("/var/lib/kubelet/kubeconfig", 0o644, KUBECONFIG)
        // 0600, so that its verdict is a pass whichever unit the test runner's cgroup names
        // (the scanner judges the unit file of the kubelet's cgroup when it names one).
        .file("/etc/systemd/system/kubelet.service", 0o600, UNIT)
        .mkdir("/var/lib/kubelet/pki", 0o755)
        .file(
            "/var/lib/kubelet/pki/kubelet-server-2030-01-01-00-00-00.pem",
            0o600,
            serving,
        );
    symlink(
        "/var/lib/kubelet/pki/kubelet-server-2030-01-01-00-00-00.pem",
        node.path("/var/lib/kubelet/pki/kubelet-server-current.pem"),
    )
    .expect("symlink the current serving certificate");
    install_shell_as_kubelet(&node);
    node
}

/// `/bin/sh` at the tree's `/usr/bin/kubelet`, with its dynamic loader and libraries at
/// their own paths, as `ldd` lists them.
fn install_shell_as_kubelet(node: &NodeRoot) {
    let sh = fs::canonicalize("/bin/sh").expect("resolve /bin/sh");
    let sh = sh.to_str().expect("UTF-8 path");
    node.copy_from_host(sh, "/usr/bin/kubelet");
    let out = Command::new("ldd").arg(sh).output().expect("run ldd");
    assert!(out.status.success(), "ldd {sh}: {out:?}");
    for word in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if word.starts_with('/') {
            node.copy_from_host(word, word);
        }
    }
}

/// The fake kubelet: `/usr/bin/kubelet` of the tree, chrooted into it (so
/// `/proc/<pid>/root` is the tree, as a containerised kubelet's root would be elsewhere),
/// blocked on `read` with nodeadm's flags on its command line. Killed by PID and reaped
/// when dropped.
struct FakeKubelet {
    child: Child,
}

impl FakeKubelet {
    fn start(node: &NodeRoot) -> Self {
        // `sh -c SCRIPT NAME ARGS...` leaves ARGS alone; `read` blocks on our pipe without
        // forking, so the process stays the one whose executable is named `kubelet`.
        let child = Command::new("chroot")
            .arg(node.dir.path())
            .args(["/usr/bin/kubelet", "-c", "read line", "kubelet"])
            .args(KUBELET_ARGS)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fake kubelet");
        let kubelet = Self { child };
        kubelet.wait_exec();
        kubelet
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Until `/proc/<pid>` shows the kubelet and its flags, not `chroot` before its exec.
    fn wait_exec(&self) {
        let dir = PathBuf::from(format!("/proc/{}", self.pid()));
        let last = KUBELET_ARGS.last().unwrap().as_bytes();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let named = fs::read_link(dir.join("exe"))
                .is_ok_and(|p| p.file_name().is_some_and(|n| n == "kubelet"));
            let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
            if named && cmdline.windows(last.len()).any(|w| w == last) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the fake kubelet (pid {}) never exec'ed", self.pid());
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        // This child only, by PID.
        match self.child.kill() {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::InvalidInput => {} // already reaped
            Err(e) => eprintln!("kill fake kubelet {}: {e}", self.pid()),
        }
        let _ = self.child.wait();
    }
}

/// What `nodeward-collector nodes --format json` says about `node`, if it lists it.
fn node_view(endpoint: &str, node: &str) -> Option<Value> {
    let out = Command::new(workspace_bin("nodeward-collector"))
        .args(["nodes", "--format", "json", "--endpoint", endpoint])
        .output()
        .expect("running nodeward-collector nodes");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .find(|v| v["node"] == node)
}

/// The node's failing checks, sorted.
fn failing(view: &Value) -> Vec<String> {
    let mut ids: Vec<String> = view["failingChecks"]
        .as_array()
        .expect("failingChecks is a list")
        .iter()
        .map(|c| c.as_str().expect("check ids").to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_kubelet_config_edit_regresses_the_posture_the_soc_and_the_fleet_view_see() {
    if !require_root("a_kubelet_config_edit_regresses_the_posture_the_soc_and_the_fleet_view_see") {
        return;
    }
    let sim = SimNode::builder().build();
    let root = eks_al2023(sim.scratch_dir());
    let kubelet = FakeKubelet::start(&root);
    root.show(kubelet.pid());

    let collector_dir = sim.scratch_dir().join("collector");
    fs::create_dir_all(&collector_dir).unwrap();
    let collector = CollectorProcess::start(&collector_dir);
    let endpoint = collector.endpoint();
    let mut tail = TailProcess::start(&endpoint, Some(0), &sim.scratch_dir().join("tail.log"));
    let spec =
        AgentSpec::new(&endpoint).extra_yaml(&format!("hostRoot: {}\n", root.dir.path().display()));
    let mut agent = AgentProcess::start(&sim, &spec);
    agent.wait_active();
    let name = agent.node_name().to_owned();

    // The first scan: what nodeadm leaves insecure fails, the rest does not.
    let first = wait_until(POSTURE_DEADLINE, "the node's posture in `nodes`", || {
        node_view(&endpoint, &name).filter(|v| v.get("postureTime").is_some())
    });
    assert_eq!(first["scanError"], Value::Null, "{first}");
    assert_eq!(first["enforcement"], "enforce", "{first}");
    let failing_before = failing(&first);
    assert_eq!(failing_before, EXPECTED_FAILING, "{first}");
    assert!(!failing_before.iter().any(|f| f == ANONYMOUS), "{first}");

    // Someone turns anonymous auth on.
    root.replace_json(CONFIG, &kubelet_config(true));
    let record = tail.wait_for(
        POSTURE_DEADLINE,
        "posture-regression of anonymous auth",
        |v| {
            v["finding"]["ruleId"] == "posture-regression"
                && v["finding"]["summary"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(ANONYMOUS))
        },
    );
    assert_eq!(record["nodeName"], name.as_str(), "{record}");
    let finding = &record["finding"];
    assert_eq!(finding["category"], "posture", "{finding}");
    assert_eq!(finding["severity"], "high", "{finding}");
    let summary = finding["summary"].as_str().unwrap();
    assert!(summary.contains("cis-eks-1.8.0:3.2.1"), "{summary}");
    assert!(summary.contains("config.json"), "{summary}");

    let after = wait_until(
        POSTURE_DEADLINE,
        "anonymous auth failing in `nodes`",
        || node_view(&endpoint, &name).filter(|v| failing(v).iter().any(|f| f == ANONYMOUS)),
    );
    // Nothing else changed.
    let mut expected = failing_before.clone();
    expected.push(ANONYMOUS.to_owned());
    expected.sort();
    assert_eq!(failing(&after), expected, "{after}");

    drop(agent);
    drop(tail);
    drop(collector);
    drop(kubelet);
    drop(root);
}
