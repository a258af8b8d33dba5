//! The simulated node itself: routing to the fake IMDS from the node and from pods, process
//! placement in cgroups and namespaces, and cleanup on every path.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use nodeward_testkit::{
    IMDS_V4, IMDS_V6, METADATA_BODY, NetNs, PodSpec, ServerLiveness, SimNode, process_cgroup,
    process_netns_inode, require_root, wait_until,
};

const META_V4: &str = "http://169.254.169.254/latest/meta-data/";
const META_V6: &str = "http://[fd00:ec2::254]/latest/meta-data/";

/// What must be gone once a node is dropped.
struct Leftovers {
    netns_prefix: String,
    test_cgroup: PathBuf,
    scratch: PathBuf,
    imds: ServerLiveness,
}

impl Leftovers {
    fn of(node: &SimNode) -> Self {
        Self {
            netns_prefix: node.netns_prefix(),
            test_cgroup: node.test_cgroup().to_owned(),
            scratch: node.scratch_dir().to_owned(),
            imds: node.imds().liveness(),
        }
    }

    fn assert_none(&self) {
        let left: Vec<_> = NetNs::list()
            .into_iter()
            .filter(|n| n.starts_with(&self.netns_prefix))
            .collect();
        assert!(left.is_empty(), "network namespaces left behind: {left:?}");
        assert!(
            !self.test_cgroup.exists(),
            "cgroup left behind: {}",
            self.test_cgroup.display()
        );
        assert!(
            !self.scratch.exists(),
            "scratch directory left behind: {}",
            self.scratch.display()
        );
        assert!(!self.imds.is_running(), "IMDS server thread still running");
    }
}

#[track_caller]
fn assert_metadata(result: &nodeward_testkit::ProbeResult, what: &str) {
    assert!(result.ok, "{what}: {result:?}");
    assert_eq!(result.status, Some(200), "{what}: {result:?}");
    assert_eq!(
        result.body.as_deref(),
        Some(METADATA_BODY),
        "{what}: {result:?}"
    );
}

/// Asserts that a dropped node's cgroup.kill reached a process the test never reaped.
fn assert_killed(mut child: Child, what: &str) {
    let status = child.wait().expect("wait for child");
    assert!(
        !status.success(),
        "{what} should have been killed, exited with {status}"
    );
}

#[test]
fn node_and_pods_reach_imds_and_everything_is_removed() {
    if !require_root("node_and_pods_reach_imds_and_everything_is_removed") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web"))
        .pod(
            PodSpec::new("cni")
                .namespace("kube-system")
                .host_network(true),
        )
        .build();
    let (web, cni) = (node.pod("web"), node.pod("cni"));
    let leftovers = Leftovers::of(&node);

    assert_metadata(&node.host_probe(&["http-get", META_V4]), "node, IPv4");
    assert_metadata(&node.host_probe(&["http-get", META_V6]), "node, IPv6");
    assert_metadata(&web.probe(&["http-get", META_V4]), "pod, IPv4");
    assert_metadata(&web.probe(&["http-get", META_V6]), "pod, IPv6");
    assert_metadata(&cni.probe(&["http-get", META_V4]), "hostNetwork pod, IPv4");
    assert_metadata(&cni.probe(&["http-get", META_V6]), "hostNetwork pod, IPv6");
    assert_metadata(
        &web.probe(&["http-get", "http://169.254.170.23/v1/credentials"]),
        "pod identity, IPv4",
    );
    assert_metadata(
        &web.probe(&["http-get", "http://[fd00:ec2::23]/v1/credentials"]),
        "pod identity, IPv6",
    );
    assert!(
        web.probe(&["connect", "--addr", "fd00:ec2::254", "--port", "80"])
            .ok
    );
    let refused = web.probe(&["connect", "--addr", "169.254.169.254", "--port", "81"]);
    assert_eq!(refused.errno, Some(libc::ECONNREFUSED), "{refused:?}");

    // Pods are routed through the node, not NATed: the server sees the pod's own address.
    let imds_from_web: Vec<_> = node
        .imds()
        .requests()
        .into_iter()
        .filter(|r| r.local.ip() == IMDS_V4 && web.ipv4().is_some_and(|ip| r.peer.ip() == ip))
        .collect();
    assert_eq!(imds_from_web.len(), 1, "{imds_from_web:?}");
    assert_eq!(imds_from_web[0].path, "/latest/meta-data/");
    assert_eq!(node.imds().request_count(), 8);
    // The bare connect carried no request; the server may accept it a moment after the
    // probe has already exited.
    wait_until(
        Duration::from_secs(5),
        "the bare connect to be accepted",
        || (node.imds().connection_count() == 9).then_some(()),
    );

    let web_sleep = web.spawn("sleep", &["infinity"]);
    assert_eq!(process_cgroup(web_sleep.pid()), web.cgroup_path());
    assert!(web.cgroup_path().starts_with(node.pod_cgroup_path()));
    assert!(
        web.cgroup_path()
            .ends_with(format!("cri-containerd-{}.scope", web.container_id()))
    );
    assert_eq!(
        process_netns_inode(web_sleep.pid()),
        std::fs::metadata(web.netns_path())
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    );
    assert_ne!(
        process_netns_inode(web_sleep.pid()),
        node.node_netns().inode()
    );

    // Left running on purpose: dropping the node must kill them.
    let cni_sleep = cni.command("sleep").arg("infinity").spawn().unwrap();
    let kubelet = node.host_command("sleep").arg("infinity").spawn().unwrap();
    assert_eq!(process_cgroup(cni_sleep.id()), cni.cgroup_path());
    assert_eq!(
        process_netns_inode(cni_sleep.id()),
        node.node_netns().inode()
    );
    let host_cgroup = node.host_cgroup_dir();
    assert_eq!(
        Path::new("/").join(process_cgroup(kubelet.id())),
        Path::new("/").join(host_cgroup.strip_prefix(node.cgroup_root()).unwrap())
    );
    assert_eq!(process_netns_inode(kubelet.id()), node.node_netns().inode());

    drop(web_sleep);
    drop(node);
    leftovers.assert_none();
    assert_killed(cni_sleep, "hostNetwork pod process");
    assert_killed(kubelet, "node process");
}

#[test]
fn pods_come_and_go_while_the_node_runs() {
    if !require_root("pods_come_and_go_while_the_node_runs") {
        return;
    }
    let node = SimNode::builder().build();
    let leftovers = Leftovers::of(&node);
    let uid = "0b5c7e2a-3f4d-4e6a-9b1c-2d3e4f5a6b7c";
    let api = node.add_pod(PodSpec::new("api").uid(uid).label("app", "api"));
    let batch = node.add_pod(PodSpec::new("batch"));
    assert_ne!(api.ipv4(), batch.ipv4());
    assert!(
        api.pod_cgroup_path()
            .ends_with("kubepods-besteffort-pod0b5c7e2a_3f4d_4e6a_9b1c_2d3e4f5a6b7c.slice")
    );
    assert_eq!(api.container_id().len(), 64);
    assert_metadata(&api.probe(&["http-get", META_V4]), "new pod");

    let pods_file = node.pods_file();
    assert!(
        pods_file.contains(uid) && pods_file.contains("\"hostNetwork\": false"),
        "{pods_file}"
    );

    let sleeper = api.command("sleep").arg("infinity").spawn().unwrap();
    node.remove_pod(&api);
    assert_killed(sleeper, "process of a removed pod");
    assert!(!NetNs::list().contains(&api.netns_name().to_owned()));
    assert!(!node.cgroup_root().join(api.pod_cgroup_path()).exists());
    assert_eq!(node.pods().len(), 1);
    assert_metadata(&batch.probe(&["http-get", META_V6]), "remaining pod");

    drop(node);
    leftovers.assert_none();
}

#[test]
fn a_panicking_test_still_cleans_up() {
    if !require_root("a_panicking_test_still_cleans_up") {
        return;
    }
    let mut seen = None;
    let mut orphan = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let node = SimNode::builder().pod(PodSpec::new("doomed")).build();
        seen = Some(Leftovers::of(&node));
        orphan = Some(
            node.pod("doomed")
                .command("sleep")
                .arg("infinity")
                .spawn()
                .unwrap(),
        );
        panic!("the test fails with a node alive");
    }));
    assert!(outcome.is_err());
    seen.expect("the node was built").assert_none();
    assert_killed(
        orphan.expect("the process started"),
        "process of a panicking test",
    );
}

/// Without any enforcement, every probe a bypass test relies on really reaches the fake
/// metadata service and is counted there, so "nothing arrived" in those tests means
/// something.
#[test]
fn every_probe_reaches_the_fake_imds_and_is_counted() {
    if !require_root("every_probe_reaches_the_fake_imds_and_is_counted") {
        return;
    }
    let node = SimNode::builder()
        .pod(PodSpec::new("web"))
        .pod(PodSpec::new("host").host_network(true))
        .build();
    for pod in [node.pod("web"), node.pod("host")] {
        let imds = node.imds();
        let (v4, v6) = (IMDS_V4.to_string(), IMDS_V6.to_string());
        let mapped = format!("::ffff:{v4}");

        let udp_before = imds.udp_datagram_count();
        for (addr, mode) in [
            (&v4, "sendto"),
            (&v6, "sendto"),
            (&mapped, "sendto"),
            (&v4, "connect"),
            (&v4, "sendmsg"),
        ] {
            let got = pod.probe(&["udp-send", "--addr", addr, "--port", "80", "--mode", mode]);
            assert!(got.ok, "{} udp {mode} to {addr}: {got:?}", pod.name());
        }
        let got = pod.probe(&[
            "udp-send", "--addr", &v6, "--port", "80", "--mode", "sendmmsg",
        ]);
        assert!(got.ok, "{} sendmmsg: {got:?}", pod.name());
        wait_until(
            Duration::from_secs(5),
            "the datagrams to be counted",
            || (imds.udp_datagram_count() >= udp_before + 7).then_some(()),
        );

        let icmp_before = imds.icmp_packet_count();
        for addr in [&v4, &v6] {
            let got = pod.probe(&["raw-send", "--addr", addr]);
            assert!(got.ok, "{} raw-send to {addr}: {got:?}", pod.name());
        }
        wait_until(
            Duration::from_secs(5),
            "the echo requests to be counted",
            || (imds.icmp_packet_count() >= icmp_before + 2).then_some(()),
        );

        let connections = imds.connection_count();
        for addr in [&v4, &mapped] {
            let got = pod.probe(&["connect", "--addr", addr, "--port", "80"]);
            assert!(got.ok, "{} connect to {addr}: {got:?}", pod.name());
        }
        let got = pod.probe(&["tcp-fastopen", "--addr", &v4, "--port", "80"]);
        assert!(got.ok, "{} tcp-fastopen: {got:?}", pod.name());
        wait_until(
            Duration::from_secs(5),
            "the connections to be counted",
            || (imds.connection_count() >= connections + 3).then_some(()),
        );
    }
}

#[test]
fn storms_report_a_rate_in_pods_and_on_the_node() {
    if !require_root("storms_report_a_rate_in_pods_and_on_the_node") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    for kind in ["connect", "udp", "exec"] {
        for (where_, got) in [
            (
                "pod",
                node.pod("web")
                    .probe(&["storm", kind, "--count", "200", "--threads", "2"]),
            ),
            (
                "node",
                node.host_probe(&["storm", kind, "--count", "200", "--threads", "2"]),
            ),
        ] {
            assert!(
                got.ok && got.ops == Some(200),
                "{kind} storm in {where_}: {got:?}"
            );
            assert!(
                got.rate.is_some_and(|r| r > 0.0) && got.seconds.is_some_and(|s| s > 0.0),
                "{got:?}"
            );
        }
    }
}
