//! Snapshots into the outbox, regressions as findings.

use std::time::Duration;

use jiff::Timestamp;
use nodeward_proto::model::{self, CheckStatus, PostureCheck};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    outbox::Outbox,
    posture::{forward::to_outbox, snapshot::from_error},
};

fn snapshot(status: CheckStatus) -> model::PostureSnapshot {
    let mut snapshot = from_error("", 1, Timestamp::now(), "enforce".to_owned());
    snapshot.scan_error = None;
    snapshot.checks = vec![PostureCheck {
        id: "kubelet-anonymous-auth".to_owned(),
        title: "Anonymous requests to the kubelet are refused".to_owned(),
        benchmarks: vec!["cis-1.12:4.2.1".to_owned()],
        status,
        observed: "true".to_owned(),
        expected: "false".to_owned(),
        source: "flag --anonymous-auth".to_owned(),
        remediation: "set it to false".to_owned(),
    }];
    snapshot
}

#[tokio::test]
async fn snapshots_become_the_latest_posture_and_regressions_findings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 64 << 20).expect("outbox");
    let (tx, rx) = watch::channel(None);
    let token = CancellationToken::new();
    let task = tokio::spawn(to_outbox(
        rx,
        outbox.clone(),
        std::sync::Arc::default(),
        token.clone(),
    ));

    tx.send_replace(Some(snapshot(CheckStatus::Pass)));
    wait_for(|| outbox.unacked_posture().expect("posture").is_some()).await;
    assert!(outbox.read_after(0, 10).expect("findings").is_empty());

    tx.send_replace(Some(snapshot(CheckStatus::Fail)));
    // The finding and the snapshot are two writes; wait for both, in either order.
    let generation = || {
        outbox
            .unacked_posture()
            .expect("posture")
            .map(|p| p.generation)
    };
    wait_for(|| !outbox.read_after(0, 10).expect("findings").is_empty() && generation() == Some(2))
        .await;
    let findings = outbox.read_after(0, 10).expect("findings");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].rule_id, "posture-regression");

    token.cancel();
    task.await.expect("joined").expect("clean end");
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not stored in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
