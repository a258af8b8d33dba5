use std::{collections::HashMap, os::unix::fs::MetadataExt as _, path::Path};

use super::*;
use crate::{pods::ContainerMeta, rules::spec::RulesConfig};

const UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
const CID: &str = "4f3c9a1e0b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

/// A pod cgroup tree in a temporary directory; returns the container cgroup's id.
fn tree(root: &Path) -> u64 {
    let dir = root.join(format!("kubepods/besteffort/pod{UID}/{CID}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::metadata(&dir).unwrap().ino()
}

fn meta() -> PodMeta {
    PodMeta {
        uid: UID.into(),
        name: "web-1".into(),
        namespace: "shop".into(),
        service_account: "web".into(),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        host_network: false,
        pod_ips: Vec::new(),
        owner: None,
        containers: vec![ContainerMeta {
            name: "web".into(),
            image: "registry.example/web:1".into(),
            id: CID.into(),
        }],
    }
}

fn exec(pid: u32, parent: u32, cgroup_id: u64, binary: &str, args: &[&str], tty: bool) -> ExecInfo {
    ExecInfo {
        pid,
        ppid: parent,
        uid: 0,
        gid: 0,
        cgroup_id,
        boot_ns: 1,
        binary: binary.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        truncated: false,
        tty,
        comm: binary.rsplit('/').next().unwrap().into(),
    }
}

fn detector(
    root: &Path,
    pods: Option<PodMeta>,
    pod_source: bool,
) -> (Detector, watch::Sender<PodSnapshot>) {
    let snapshot: HashMap<String, PodMeta> = pods.into_iter().map(|m| (m.uid.clone(), m)).collect();
    let (tx, rx) = watch::channel(Arc::new(snapshot));
    let index = CgroupIndex::new(root.to_owned(), root.join("kubepods"));
    let rules = RuleSet::build(&RulesConfig::default()).unwrap();
    (
        Detector::new(rules, index, rx, pod_source, Duration::from_mins(1)),
        tx,
    )
}

#[test]
fn a_rule_fires_with_pod_container_process_and_parent() {
    let root = tempfile::tempdir().unwrap();
    let cgroup = tree(root.path());
    let (mut detector, _tx) = detector(root.path(), Some(meta()), true);
    let now = Instant::now();
    assert!(
        detector
            .on_exec(
                exec(100, 1, cgroup, "/usr/bin/containerd-shim", &["shim"], false),
                now
            )
            .is_empty()
    );
    let findings = detector.on_exec(exec(101, 100, cgroup, "/bin/bash", &["bash"], true), now);
    let [finding] = findings.as_slice() else {
        panic!("one finding: {findings:?}")
    };
    assert_eq!(finding.rule_id, "shell-in-container");
    assert_eq!(finding.techniques, ["T1059.004", "T1609"]);
    let pod = finding.pod.as_ref().unwrap();
    assert_eq!(
        (
            pod.namespace.as_str(),
            pod.name.as_str(),
            pod.identity_pending
        ),
        ("shop", "web-1", false)
    );
    let container = finding.container.as_ref().unwrap();
    assert_eq!(
        (container.name.as_str(), container.image.as_str()),
        ("web", "registry.example/web:1")
    );
    assert_eq!(finding.process.as_ref().unwrap().binary, "/bin/bash");
    assert_eq!(
        finding.parent.as_ref().unwrap().binary,
        "/usr/bin/containerd-shim"
    );
    assert!(
        finding.summary.contains("pod shop/web-1"),
        "{}",
        finding.summary
    );
}

#[test]
fn unknown_pods_are_held_then_judged_with_metadata() {
    let root = tempfile::tempdir().unwrap();
    let cgroup = tree(root.path());
    let (mut detector, tx) = detector(root.path(), None, true);
    let now = Instant::now();
    assert!(
        detector
            .on_exec(
                exec(
                    5,
                    1,
                    cgroup,
                    "/usr/bin/kubectl",
                    &["kubectl", "get", "secrets"],
                    false
                ),
                now
            )
            .is_empty(),
        "held"
    );
    assert!(detector.on_tick(now).is_empty(), "still held");
    tx.send_replace(Arc::new([(UID.to_owned(), meta())].into()));
    let findings = detector.on_tick(now);
    assert_eq!(findings.len(), 1);
    assert!(!findings[0].pod.as_ref().unwrap().identity_pending);
    assert_eq!(findings[0].pod.as_ref().unwrap().namespace, "shop");
}

#[test]
fn a_hold_that_times_out_says_identity_pending() {
    let root = tempfile::tempdir().unwrap();
    let cgroup = tree(root.path());
    let (mut detector, _tx) = detector(root.path(), None, true);
    let now = Instant::now();
    detector.on_exec(exec(5, 1, cgroup, "/tmp/payload", &["payload"], false), now);
    let findings = detector.on_tick(now + IDENTITY_HOLD);
    assert_eq!(findings.len(), 1);
    let pod = findings[0].pod.as_ref().unwrap();
    assert!(pod.identity_pending && pod.namespace.is_empty() && pod.uid == UID);
}

#[test]
fn without_a_metadata_source_nothing_waits() {
    let root = tempfile::tempdir().unwrap();
    let cgroup = tree(root.path());
    let (mut detector, _tx) = detector(root.path(), None, false);
    let findings = detector.on_exec(
        exec(5, 1, cgroup, "/tmp/payload", &["payload"], false),
        Instant::now(),
    );
    assert_eq!(findings.len(), 1);
    assert!(findings[0].pod.as_ref().unwrap().identity_pending);
}

#[test]
fn repeats_are_folded_and_shutdown_flushes_them() {
    let root = tempfile::tempdir().unwrap();
    let cgroup = tree(root.path());
    let (mut detector, _tx) = detector(root.path(), Some(meta()), true);
    let now = Instant::now();
    let mut reported = 0;
    for pid in 0..50 {
        reported += detector
            .on_exec(
                exec(
                    200 + pid,
                    1,
                    cgroup,
                    "/usr/bin/apt-get",
                    &["apt-get", "install", "x"],
                    false,
                ),
                now,
            )
            .len();
    }
    assert_eq!(reported, 1, "the first at once");
    let rest = detector.drain(now);
    assert_eq!(rest.iter().map(|f| f.count).collect::<Vec<_>>(), [49]);
}

mod imds {
    use nodeward_common::{
        AF_INET6,
        imds::{
            HOOK_CONNECT6, HOOK_EGRESS, HOOK_FORWARDED, HOOK_SENDMSG6, HOOK_UPLINK, ImdsEvent,
            VERDICT_BLOCKED,
        },
    };
    use nodeward_proto::model::{Category, Protocol, Severity, Verdict};

    use super::*;

    fn event(cgroup_id: u64, pid: u32, hook: u32) -> ImdsEvent {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        ImdsEvent {
            cgroup_id,
            boot_ns: 1,
            total: 3,
            pid,
            uid: 0,
            family: AF_INET6,
            protocol: 17,
            port: 80,
            verdict: VERDICT_BLOCKED,
            hook,
            ifindex: 0,
            addr: "fd00:ec2::254"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            comm,
        }
    }

    #[test]
    fn names_pod_container_process_and_destination() {
        let root = tempfile::tempdir().unwrap();
        let cgroup = tree(root.path());
        let (mut detector, _tx) = detector(root.path(), Some(meta()), true);
        // The process exec'd earlier and has exited: the finding still names its binary.
        detector.on_exec(
            exec(
                300,
                1,
                cgroup,
                "/usr/bin/curl",
                &["curl", "http://[fd00:ec2::254]/"],
                false,
            ),
            Instant::now(),
        );
        let finding = detector.imds(&event(cgroup, 300, HOOK_SENDMSG6), 3);
        assert_eq!(
            (finding.rule_id.as_str(), finding.severity, finding.count),
            ("imds-access", Severity::High, 3)
        );
        assert_eq!(
            (finding.category, finding.techniques.as_slice()),
            (Category::Enforcement, ["T1552.005".to_owned()].as_slice())
        );
        let pod = finding.pod.unwrap();
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("shop", "web-1")
        );
        assert_eq!(finding.container.unwrap().image, "registry.example/web:1");
        assert_eq!(finding.verdict, Some(Verdict::Blocked));
        let dst = finding.destination.unwrap();
        assert_eq!(
            (dst.address.to_string().as_str(), dst.port, dst.protocol),
            ("fd00:ec2::254", 80, Protocol::Udp)
        );
        let process = finding.process.unwrap();
        assert_eq!(
            (process.binary.as_str(), process.args.len()),
            ("/usr/bin/curl", 2)
        );
        assert!(
            finding.summary.contains("pod shop/web-1") && finding.summary.contains("datagram"),
            "{}",
            finding.summary
        );
    }

    #[test]
    fn unknown_metadata_and_unknown_cgroups_still_report() {
        let root = tempfile::tempdir().unwrap();
        let cgroup = tree(root.path());
        let (mut detector, _tx) = detector(root.path(), None, true);
        let finding = detector.imds(&event(cgroup, std::process::id(), HOOK_CONNECT6), 1);
        let pod = finding.pod.unwrap();
        assert!(pod.uid == UID && pod.identity_pending);
        assert!(
            !finding.process.unwrap().binary.is_empty(),
            "a live process is read from /proc"
        );
        let finding = detector.imds(&event(77, 0, HOOK_EGRESS), 1);
        assert!(finding.pod.is_none() && finding.process.is_none());
        assert!(
            finding.summary.contains("raw socket in cgroup id 77"),
            "{}",
            finding.summary
        );
    }

    #[test]
    fn packets_the_node_saw_name_the_pod_and_the_interface_but_no_process() {
        let root = tempfile::tempdir().unwrap();
        let cgroup = tree(root.path());
        let pod_cgroup =
            std::fs::metadata(root.path().join(format!("kubepods/besteffort/pod{UID}")))
                .unwrap()
                .ino();
        let (mut detector, _tx) = detector(root.path(), Some(meta()), true);

        let mut forwarded = event(pod_cgroup, 0, HOOK_FORWARDED);
        forwarded.ifindex = 7;
        let finding = detector.imds(&forwarded, 2);
        assert_eq!(finding.pod.unwrap().name, "web-1");
        assert!(finding.container.is_none() && finding.process.is_none());
        assert!(
            finding
                .summary
                .starts_with("pod shop/web-1, through node interface 7, sent a packet to"),
            "{}",
            finding.summary
        );

        let mut stranger = event(0, 0, HOOK_FORWARDED);
        stranger.ifindex = 9;
        let finding = detector.imds(&stranger, 1);
        assert!(finding.pod.is_none() && finding.process.is_none());
        assert!(
            finding
                .summary
                .contains("node interface 9, where no known pod is"),
            "{}",
            finding.summary
        );

        let finding = detector.imds(&event(cgroup, 0, HOOK_UPLINK), 1);
        assert_eq!(finding.container.unwrap().id, CID);
        assert!(finding.process.is_none());
        assert!(
            finding
                .summary
                .contains("a raw or packet socket in pod shop/web-1"),
            "{}",
            finding.summary
        );
    }
}
