use proptest::prelude::*;

use super::*;

const UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
const CID: &str = "4f3c9a1e0b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

fn expect(path: &str, pod: Option<&str>, container: Option<&str>) {
    let id = parse_cgroup_path(path);
    assert_eq!(id.pod_uid.as_deref(), pod, "pod uid of {path}");
    assert_eq!(
        id.container_id.as_deref(),
        container,
        "container id of {path}"
    );
}

#[test]
fn systemd_driver_all_runtimes() {
    let uid_ = UID.replace('-', "_");
    for (scope, qos) in [
        (format!("cri-containerd-{CID}.scope"), "besteffort"),
        (format!("crio-{CID}.scope"), "burstable"),
        (format!("docker-{CID}.scope"), "besteffort"),
    ] {
        expect(
            &format!("/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid_}.slice/{scope}"),
            Some(UID),
            Some(CID),
        );
    }
    // Guaranteed pods sit directly below kubepods.slice.
    expect(
        &format!("kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{CID}.scope"),
        Some(UID),
        Some(CID),
    );
}

#[test]
fn cgroupfs_driver() {
    expect(
        &format!("/kubepods/besteffort/pod{UID}/{CID}"),
        Some(UID),
        Some(CID),
    );
    expect(
        &format!("/kubepods/pod{UID}/crio-{CID}"),
        Some(UID),
        Some(CID),
    );
}

#[test]
fn pod_level_and_non_pod_cgroups() {
    expect(&format!("/kubepods/burstable/pod{UID}"), Some(UID), None);
    expect("/kubepods.slice/kubepods-besteffort.slice", None, None);
    expect("/system.slice/kubelet.service", None, None);
    expect(&format!("/system.slice/docker-{CID}.scope"), None, None);
}

#[test]
fn conmon_is_not_the_container() {
    let uid_ = UID.replace('-', "_");
    expect(
        &format!("/kubepods.slice/kubepods-pod{uid_}.slice/crio-conmon-{CID}.scope"),
        Some(UID),
        None,
    );
}

#[test]
fn static_pod_hash_uids() {
    let hash = "6f1b2e3c4d5a69788796a5b4c3d2e1f0";
    expect(
        &format!("/kubepods/burstable/pod{hash}/{CID}"),
        Some(hash),
        Some(CID),
    );
}

#[test]
fn malformed_ids_are_ignored() {
    expect("/kubepods/podnot-a-uid/abc", None, None);
    expect(
        &format!("/kubepods/pod{UID}/{}", &CID[..63]),
        Some(UID),
        None,
    );
    expect(
        &format!("/kubepods/pod{}/{CID}", UID.to_uppercase()),
        None,
        None,
    );
}

#[test]
fn index_finds_cgroups_created_after_the_first_scan() {
    let root = tempfile::tempdir().unwrap();
    let pods = root.path().join("kubepods");
    std::fs::create_dir_all(&pods).unwrap();
    let mut index = CgroupIndex::new(root.path().to_owned(), pods.clone());
    assert!(index.lookup(u64::MAX).is_none());

    let container = pods.join(format!("besteffort/pod{UID}/{CID}"));
    std::fs::create_dir_all(&container).unwrap();
    let ino = std::fs::metadata(&container).unwrap().ino();
    let entry = index.lookup(ino).expect("new container found by rescan");
    assert_eq!(entry.path, format!("kubepods/besteffort/pod{UID}/{CID}"));
    assert_eq!(entry.identity.pod_uid.as_deref(), Some(UID));
}

proptest! {
    #[test]
    fn parser_never_panics(path in "[a-z0-9_./-]{0,200}") {
        let _ = parse_cgroup_path(&path);
    }

    #[test]
    fn systemd_and_cgroupfs_agree(uid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", cid in "[0-9a-f]{64}") {
        let systemd = parse_cgroup_path(&format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{cid}.scope",
            uid.replace('-', "_")
        ));
        let cgroupfs = parse_cgroup_path(&format!("kubepods/burstable/pod{uid}/{cid}"));
        prop_assert_eq!(&systemd, &cgroupfs);
        prop_assert_eq!(systemd.pod_uid, Some(uid));
        prop_assert_eq!(systemd.container_id, Some(cid));
    }
}

#[test]
fn pod_cgroups_are_found_by_uid_and_forgotten_when_gone() {
    let root = tempfile::tempdir().unwrap();
    let pods = root.path().join("kubepods.slice");
    let uid_ = UID.replace('-', "_");
    let pod = pods.join(format!(
        "kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice"
    ));
    // conmon's scope names the pod but is not the pod's cgroup.
    std::fs::create_dir_all(pod.join(format!("crio-conmon-{CID}.scope"))).unwrap();
    std::fs::create_dir_all(pod.join(format!("crio-{CID}.scope"))).unwrap();
    let mut index = CgroupIndex::new(root.path().to_owned(), pods.clone());
    let ino = std::fs::metadata(&pod).unwrap().ino();
    assert_eq!(index.pod_cgroup_id(UID), Some(ino));
    assert_eq!(
        index.pod_cgroup_id("6f1b2e3c4d5a69788796a5b4c3d2e1f0"),
        None
    );

    std::fs::remove_dir_all(&pod).unwrap();
    index.invalidate();
    assert_eq!(index.pod_cgroup_id(UID), None);
}
