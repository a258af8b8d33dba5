//! A machine without a kubelet: the scan says so clearly and `check` exits 2.

use std::path::Path;

use nodeward_posture::cli::{CheckArgs, ColorChoice, run_check};
use nodeward_posture::{KubeletSource, ScanError, ScanOptions, scan};

const MESSAGE: &str =
    "no kubelet process found on this node; pass --kubelet-pid or --kubelet-args with --host-root";

#[test]
fn discovery_in_an_empty_proc_fails_clearly_with_exit_2() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("proc")).expect("mkdir proc");
    let options = ScanOptions {
        host_root: Some(root.path().to_path_buf()),
        kubelet: KubeletSource::Discover,
    };
    let err = scan(&options).expect_err("no kubelet");
    assert!(matches!(err, ScanError::NoKubelet { .. }), "{err:?}");
    assert!(err.to_string().starts_with(MESSAGE), "{err}");
    let args = CheckArgs {
        host_root: Some(root.path().to_path_buf()),
        color: ColorChoice::Never,
        ..CheckArgs::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run_check(&args, &mut out, &mut err), 2);
    assert!(out.is_empty());
    assert!(String::from_utf8_lossy(&err).contains(MESSAGE));
}

#[test]
fn discovery_on_this_machine_finds_no_real_kubelet() {
    // Other test binaries may run fake kubelets concurrently (nextest): those live in
    // temporary directories and are not this machine's kubelet.
    match scan(&ScanOptions::default()) {
        Err(ScanError::NoKubelet { .. }) => {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = run_check(
                &CheckArgs {
                    color: ColorChoice::Never,
                    ..CheckArgs::default()
                },
                &mut out,
                &mut err,
            );
            // A fake may have started in between; only a clean "none" must be exit 2.
            if code == 2 {
                assert!(String::from_utf8_lossy(&err).contains(MESSAGE));
            }
        }
        Err(ScanError::AmbiguousKubelet { pids, .. }) => {
            for pid in pids {
                assert_fake(pid);
            }
        }
        Ok(report) => assert_fake(
            report
                .kubelet_pid
                .and_then(|p| u32::try_from(p).ok())
                .expect("live pid"),
        ),
        Err(other) => panic!("unexpected scan error: {other}"),
    }
}

fn assert_fake(pid: u32) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    assert!(
        exe.starts_with(std::env::temp_dir()) || exe.starts_with(Path::new("/tmp")),
        "a kubelet runs on this machine: pid {pid}, {}",
        exe.display()
    );
}
