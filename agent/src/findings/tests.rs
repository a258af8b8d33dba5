use std::{collections::HashMap, os::unix::fs::MetadataExt as _, path::PathBuf, sync::Arc};

use nodeward_common::{
    AF_INET6,
    imds::{HOOK_SENDMSG6, VERDICT_BLOCKED},
};

use super::*;
use crate::pods::PodMeta;

const UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

fn event(cgroup_id: u64, hook: u32) -> ImdsEvent {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"curl");
    ImdsEvent {
        cgroup_id,
        boot_ns: 1,
        pid: std::process::id(),
        uid: 0,
        family: AF_INET6,
        protocol: 17,
        port: 80,
        verdict: VERDICT_BLOCKED,
        hook,
        total: 3,
        reserved: 0,
        addr: "fd00:ec2::254"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
        comm,
    }
}

fn pods(meta: Option<PodMeta>) -> watch::Receiver<PodSnapshot> {
    let map: HashMap<String, PodMeta> = meta.into_iter().map(|m| (m.uid.clone(), m)).collect();
    watch::channel(Arc::new(map)).1
}

fn container_dir(root: &std::path::Path) -> (PathBuf, String) {
    let cid = "ab".repeat(32);
    let dir = root.join(format!("kubepods/besteffort/pod{UID}/{cid}"));
    std::fs::create_dir_all(&dir).unwrap();
    (dir, cid)
}

#[test]
fn names_pod_container_process_and_destination() {
    let root = tempfile::tempdir().unwrap();
    let (dir, cid) = container_dir(root.path());
    let index = CgroupIndex::new(root.path().to_owned(), root.path().join("kubepods"));
    let meta = PodMeta {
        uid: UID.into(),
        name: "web-1".into(),
        namespace: "shop".into(),
        service_account: "web".into(),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        host_network: true,
        owner: None,
        containers: Vec::new(),
    };
    let mut builder = FindingBuilder::new(index, BootClock::new(), pods(Some(meta)));

    let finding = builder.imds(
        &event(std::fs::metadata(&dir).unwrap().ino(), HOOK_SENDMSG6),
        3,
    );
    assert_eq!(
        (finding.rule_id.as_str(), finding.severity, finding.count),
        ("imds-access", Severity::High, 3)
    );
    let pod = finding.pod.unwrap();
    assert_eq!(
        (
            pod.namespace.as_str(),
            pod.name.as_str(),
            pod.service_account.as_str()
        ),
        ("shop", "web-1", "web")
    );
    assert!(pod.host_network);
    assert_eq!(finding.container.unwrap().id, cid);
    assert_eq!(finding.verdict, Some(Verdict::Blocked));
    let dst = finding.destination.unwrap();
    assert_eq!(
        (dst.address.to_string().as_str(), dst.port, dst.protocol),
        ("fd00:ec2::254", 80, Protocol::Udp)
    );
    let process = finding.process.unwrap();
    assert_eq!(process.comm, "curl");
    assert!(
        !process.binary.is_empty() && !process.args.is_empty(),
        "read from /proc"
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
    let (dir, _) = container_dir(root.path());
    let index = CgroupIndex::new(root.path().to_owned(), root.path().join("kubepods"));
    let mut builder = FindingBuilder::new(index, BootClock::new(), pods(None));
    let finding = builder.imds(
        &event(std::fs::metadata(&dir).unwrap().ino(), HOOK_CONNECT6),
        1,
    );
    assert_eq!(finding.pod.unwrap().uid, UID);
    assert!(
        finding.summary.contains(&format!("pod {UID}")),
        "{}",
        finding.summary
    );

    let finding = builder.imds(&event(77, HOOK_EGRESS), 1);
    assert!(finding.pod.is_none() && finding.process.is_none());
    assert!(
        finding.summary.contains("raw socket in cgroup id 77"),
        "{}",
        finding.summary
    );
}

#[test]
fn losses_become_findings() {
    let finding = lost("imds", 12);
    assert_eq!(
        (finding.rule_id.as_str(), finding.count),
        ("events-lost", 12)
    );
    assert!(
        finding.summary.starts_with("12 imds reports"),
        "{}",
        finding.summary
    );
}
