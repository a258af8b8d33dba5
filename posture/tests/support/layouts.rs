//! Node trees laid out as real distributions lay them out, plus a hardened node on which
//! every kubelet check passes (the base the table-driven tests break one thing at a time).

use serde_json::{Value, json};

use super::certs::{self, Pem};
use super::{Node, Report};

/// A node tree and the kubelet command line that goes with it.
pub struct Fixture {
    pub name: &'static str,
    pub node: Node,
    pub args: String,
}

impl Fixture {
    /// Scans offline.
    pub fn scan(&self) -> Report {
        self.node.scan(&self.args)
    }
}

/// The suites CIS accepts.
pub const STRONG_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
];

/// What EKS AMIs configure: the strong suites plus two RSA key-exchange ones.
fn eks_suites() -> Value {
    let mut suites: Vec<&str> = STRONG_SUITES.to_vec();
    suites.extend([
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
    ]);
    json!(suites)
}

/// A kubeconfig whose user presents a client certificate.
pub fn cert_kubeconfig(cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /etc/kubernetes/pki/ca.crt\n    server: https://10.0.0.1:6443\n  name: default-cluster\ncontexts:\n- context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\n  name: default-context\ncurrent-context: default-context\npreferences: {{}}\nusers:\n- name: default-auth\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n"
    )
}

/// A kubeconfig whose user authenticates with aws-iam-authenticator, as on EKS.
pub fn exec_kubeconfig() -> String {
    "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /etc/kubernetes/pki/ca.crt\n    server: https://ABC.gr7.us-west-2.eks.amazonaws.com\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: kubelet\n  name: kubelet\ncurrent-context: kubelet\nusers:\n- name: kubelet\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: /usr/bin/aws-iam-authenticator\n      args: [token, -i, demo]\n".to_owned()
}

/// The cluster CA at /etc/kubernetes/pki/ca.crt, 0644.
pub fn write_ca(node: &Node) -> Pem {
    let ca = certs::ca();
    node.dir("/etc/kubernetes/pki", 0o755)
        .file("/etc/kubernetes/pki/ca.crt", 0o644, &ca.cert);
    ca
}

/// The kubelet's PKI directory as a rotating kubelet leaves it: dated files, 0600, and
/// `*-current.pem` symlinks with absolute targets (re-rooted by the scanner).
pub fn write_pki(node: &Node, dir: &str, client: bool, server: bool) {
    node.dir(dir, 0o755);
    if client {
        let pem = certs::valid("system:node:node-1");
        let dated = format!("{dir}/kubelet-client-2030-01-01-00-00-00.pem");
        node.file(&dated, 0o600, pem.bundle())
            .symlink(&format!("{dir}/kubelet-client-current.pem"), &dated);
    }
    if server {
        let pem = certs::valid("node-1");
        let dated = format!("{dir}/kubelet-server-2030-01-01-00-00-00.pem");
        node.file(&dated, 0o600, pem.bundle())
            .symlink(&format!("{dir}/kubelet-server-current.pem"), &dated);
    }
}

/// The KubeletConfiguration of the hardened node.
pub fn hardened_config() -> Value {
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true, "cacheTTL": "2m0s"},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}
        },
        "authorization": {"mode": "Webhook"},
        "readOnlyPort": 0,
        "rotateCertificates": true,
        "serverTLSBootstrap": true,
        "featureGates": {"RotateKubeletServerCertificate": true},
        "tlsCipherSuites": STRONG_SUITES,
        "podPidsLimit": 4096,
        "seccompDefault": true,
        "protectKernelDefaults": true,
        "eventRecordQPS": 50
    })
}

/// The hardened node's kubelet command line.
pub const HARDENED_ARGS: &str = "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf --container-runtime-endpoint=unix:///run/containerd/containerd.sock";

/// kubeadm's layout, with everything a hardening guide asks for: every kubelet check passes.
pub fn hardened() -> Fixture {
    let node = Node::new();
    write_ca(&node);
    node.dir("/var/lib/kubelet", 0o700)
        .json("/var/lib/kubelet/config.yaml", 0o600, &hardened_config())
        .file(
            "/etc/kubernetes/kubelet.conf",
            0o600,
            cert_kubeconfig(
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
            ),
        )
        .file("/usr/lib/systemd/system/kubelet.service", 0o600, UNIT)
        .file(
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            0o600,
            KUBEADM_DROP_IN,
        );
    write_pki(&node, "/var/lib/kubelet/pki", true, true);
    Fixture {
        name: "hardened",
        node,
        args: HARDENED_ARGS.to_owned(),
    }
}

const UNIT: &str = "[Unit]\nDescription=kubelet\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\n[Install]\nWantedBy=multi-user.target\n";
const KUBEADM_DROP_IN: &str = "[Service]\nEnvironment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\nEnvironment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\nEnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n";

/// A node `kubeadm join` set up: `/var/lib/kubelet/config.yaml` (0644, YAML, zero durations
/// written out), `/etc/kubernetes/kubelet.conf`, a self-signed serving certificate.
pub fn kubeadm() -> Fixture {
    let node = Node::new();
    write_ca(&node);
    node.dir("/var/lib/kubelet", 0o755)
        .file("/var/lib/kubelet/config.yaml", 0o644, KUBEADM_CONFIG)
        .file(
            "/var/lib/kubelet/kubeadm-flags.env",
            0o644,
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10\"\n",
        )
        .file(
            "/etc/kubernetes/kubelet.conf",
            0o600,
            cert_kubeconfig(
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
            ),
        )
        .file("/lib/systemd/system/kubelet.service", 0o644, UNIT)
        .file("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", 0o644, KUBEADM_DROP_IN);
    write_pki(&node, "/var/lib/kubelet/pki", true, false);
    let serving = certs::valid("node-1@1900000000");
    node.file("/var/lib/kubelet/pki/kubelet.crt", 0o644, &serving.cert)
        .file("/var/lib/kubelet/pki/kubelet.key", 0o600, &serving.key);
    Fixture {
        name: "kubeadm",
        node,
        args: "/usr/bin/kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml --container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10".to_owned(),
    }
}

const KUBEADM_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
containerRuntimeEndpoint: \"\"
cpuManagerReconcilePeriod: 0s
evictionPressureTransitionPeriod: 0s
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
httpCheckFrequency: 0s
imageMaximumGCAge: 0s
imageMinimumGCAge: 0s
kind: KubeletConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: \"0\"
  verbosity: 0
memorySwap: {}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
";

fn eks_config() -> Value {
    json!({
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "address": "0.0.0.0",
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"cacheTTL": "2m0s", "enabled": true},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}
        },
        "clusterDomain": "cluster.local",
        "hairpinMode": "hairpin-veth",
        "readOnlyPort": 0,
        "cgroupDriver": "systemd",
        "cgroupRoot": "/",
        "featureGates": {"RotateKubeletServerCertificate": true},
        "protectKernelDefaults": true,
        "serializeImagePulls": false,
        "serverTLSBootstrap": true,
        "tlsCipherSuites": eks_suites(),
        "clusterDNS": ["10.100.0.10"],
        "maxPods": 29
    })
}

fn eks_common(node: &Node, kubeconfig: &str) {
    write_ca(node);
    node.file(kubeconfig, 0o644, exec_kubeconfig()).file(
        "/etc/systemd/system/kubelet.service",
        0o644,
        UNIT,
    );
    write_pki(node, "/var/lib/kubelet/pki", false, true);
}

/// An EKS Amazon Linux 2 node (bootstrap.sh): one JSON config file, an exec kubeconfig,
/// arguments in a systemd drop-in, `--hostname-override` with the private DNS name.
pub fn eks_al2() -> Fixture {
    let node = Node::new();
    eks_common(&node, "/var/lib/kubelet/kubeconfig");
    node.json("/etc/kubernetes/kubelet/kubelet-config.json", 0o644, &eks_config())
        .file(
            "/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf",
            0o644,
            "[Service]\nEnvironment='KUBELET_ARGS=--node-ip=192.168.1.10 --pod-infra-container-image=602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.5 --v=2'\n",
        );
    Fixture {
        name: "eks-al2",
        node,
        args: "/usr/bin/kubelet --config /etc/kubernetes/kubelet/kubelet-config.json --kubeconfig /var/lib/kubelet/kubeconfig --container-runtime-endpoint unix:///run/containerd/containerd.sock --image-credential-provider-config /etc/eks/image-credential-provider/config.json --image-credential-provider-bin-dir /etc/eks/image-credential-provider --node-ip=192.168.1.10 --pod-infra-container-image=602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.5 --v=2 --cloud-provider=external --hostname-override=ip-192-168-1-10.us-west-2.compute.internal".to_owned(),
    }
}

/// An EKS Amazon Linux 2023 node (nodeadm): `config.json` plus `config.json.d` drop-ins,
/// one of them added by the cluster operator to harden the node further.
pub fn eks_al2023() -> Fixture {
    let node = Node::new();
    eks_common(&node, "/var/lib/kubelet/kubeconfig");
    let mut config = eks_config();
    // nodeadm leaves these to the kubelet's defaults.
    super::merge(
        &mut config,
        &json!({"readOnlyPort": null, "authentication": {"anonymous": null}}),
    );
    node.json("/etc/kubernetes/kubelet/config.json", 0o644, &config)
        .dir("/etc/kubernetes/kubelet/config.json.d", 0o755)
        .json(
            "/etc/kubernetes/kubelet/config.json.d/00-nodeadm.conf",
            0o644,
            &json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "maxPods": 17, "providerID": "aws:///us-west-2a/i-0123456789abcdef0"}),
        )
        .json(
            "/etc/kubernetes/kubelet/config.json.d/40-hardening.conf",
            0o644,
            &json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "seccompDefault": true, "podPidsLimit": 4096, "tlsCipherSuites": STRONG_SUITES}),
        )
        // Not a *.conf: the kubelet ignores it, so must the scanner.
        .file("/etc/kubernetes/kubelet/config.json.d/README", 0o644, "not: [valid");
    Fixture {
        name: "eks-al2023",
        node,
        args: "/usr/bin/kubelet --config=/etc/kubernetes/kubelet/config.json --config-dir=/etc/kubernetes/kubelet/config.json.d --kubeconfig=/var/lib/kubelet/kubeconfig --image-credential-provider-bin-dir=/etc/eks/image-credential-provider --image-credential-provider-config=/etc/eks/image-credential-provider/config.json --node-ip=192.168.1.11 --cloud-provider=external --v=2".to_owned(),
    }
}

/// A Bottlerocket node: YAML config at `/etc/kubernetes/kubelet/config`, kubeconfig beside
/// it, `--cert-dir` given, the unit under `/usr/lib` with a drop-in in `/etc`.
pub fn bottlerocket() -> Fixture {
    let node = Node::new();
    write_ca(&node);
    node.file(
        "/etc/kubernetes/kubelet/config",
        0o644,
        "---\nkind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\naddress: 0.0.0.0\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    cacheTTL: 2m0s\n    enabled: true\n  x509:\n    clientCAFile: \"/etc/kubernetes/pki/ca.crt\"\nauthorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 5m0s\n    cacheUnauthorizedTTL: 30s\nclusterDomain: cluster.local\nclusterDNS:\n- 10.100.0.10\nreadOnlyPort: 0\nprotectKernelDefaults: true\nserializeImagePulls: false\nserverTLSBootstrap: true\nfeatureGates:\n  RotateKubeletServerCertificate: true\npodPidsLimit: 1048576\ncgroupDriver: systemd\n",
    )
    .file("/etc/kubernetes/kubelet/kubeconfig", 0o644, exec_kubeconfig())
    .file("/usr/lib/systemd/system/kubelet.service", 0o644, UNIT)
    .file("/etc/systemd/system/kubelet.service.d/exec-start.conf", 0o644, "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --config /etc/kubernetes/kubelet/config\n");
    write_pki(&node, "/var/lib/kubelet/pki", false, true);
    Fixture {
        name: "bottlerocket",
        node,
        args: "/usr/bin/kubelet --cloud-provider external --kubeconfig /etc/kubernetes/kubelet/kubeconfig --config /etc/kubernetes/kubelet/config --container-runtime-endpoint=unix:///run/containerd/containerd.sock --containerd=/run/containerd/containerd.sock --root-dir /var/lib/kubelet --cert-dir /var/lib/kubelet/pki --node-ip 192.168.1.12 --node-labels \"\" --register-with-taints \"\" --pod-infra-container-image 602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.1-eksbuild.1".to_owned(),
    }
}

/// A kubelet started with flags only: the legacy defaults apply.
pub fn flags_only() -> Fixture {
    let node = Node::new();
    write_ca(&node);
    node.file(
        "/etc/kubernetes/kubelet.conf",
        0o600,
        cert_kubeconfig(
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
        ),
    )
    .file("/etc/systemd/system/kubelet.service", 0o644, UNIT);
    write_pki(&node, "/var/lib/kubelet/pki", true, false);
    Fixture {
        name: "flags-only",
        node,
        args: "/usr/local/bin/kubelet --kubeconfig=/etc/kubernetes/kubelet.conf --client-ca-file=/etc/kubernetes/pki/ca.crt --container-runtime-endpoint=unix:///run/containerd/containerd.sock --rotate-certificates".to_owned(),
    }
}

/// Every distribution layout.
pub fn all() -> Vec<Fixture> {
    vec![
        eks_al2(),
        eks_al2023(),
        kubeadm(),
        bottlerocket(),
        flags_only(),
    ]
}
