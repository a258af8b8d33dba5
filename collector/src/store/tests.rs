use nodeward_proto::model::{Finding, Severity};

use super::*;

fn origin(node: &str, stream: &str) -> Origin {
    Origin {
        node_name: node.into(),
        stream_id: stream.into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        cluster: "prod".into(),
    }
}

fn finding(seq: u64) -> Finding {
    let summary = format!("attempt {seq}");
    Finding {
        seq,
        ..Finding::new("imds-access", Severity::High, summary, Timestamp::now())
    }
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("nested/collector.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn resent_findings_are_stored_once() {
    let (_dir, store) = store().await;
    let a = origin("node-a", "s1");
    store.record_hello(&a, Timestamp::now()).await.unwrap();
    let first = store
        .insert_findings(&a, vec![finding(1), finding(2)], Timestamp::now())
        .await
        .unwrap();
    assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
    // A reconnecting agent resends 2 along with the new 3.
    let again = store
        .insert_findings(&a, vec![finding(2), finding(3)], Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        again
            .iter()
            .map(|r| r.finding.as_ref().unwrap().seq)
            .collect::<Vec<_>>(),
        [3]
    );
    let all = store.findings_after(0, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| r.finding.as_ref().unwrap().seq)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(store.last_id().await.unwrap(), all[2].id);
}

#[tokio::test]
async fn same_seq_from_another_node_or_stream_is_distinct() {
    let (_dir, store) = store().await;
    for o in [
        origin("node-a", "s1"),
        origin("node-b", "s1"),
        origin("node-a", "s2"),
    ] {
        assert_eq!(
            store
                .insert_findings(&o, vec![finding(1)], Timestamp::now())
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn findings_after_pages_in_order_and_round_trips() {
    let (_dir, store) = store().await;
    let a = origin("node-a", "s1");
    store
        .insert_findings(&a, (1..=5).map(finding).collect(), Timestamp::now())
        .await
        .unwrap();
    let page = store.findings_after(2, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4]);
    let record = model::FindingRecord::try_from(page[0].clone()).unwrap();
    assert_eq!(record.node_name, "node-a");
    assert_eq!(record.finding.summary, "attempt 3");
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let store = Store::open_sqlite(&path).await.unwrap();
        store
            .insert_findings(&origin("n", "s"), vec![finding(1)], Timestamp::now())
            .await
            .unwrap();
    }
    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(store.last_id().await.unwrap(), 1);
}

#[tokio::test]
async fn unusable_path_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = Store::open_sqlite(&file.join("c.db"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("c.db"), "{err}");
}

fn snapshot(generation: u64, failing: &[&str], passing: &[&str]) -> model::PostureSnapshot {
    let check = |id: &&str, status| model::PostureCheck {
        id: (*id).into(),
        title: format!("title {id}"),
        benchmarks: vec![],
        status,
        observed: String::new(),
        expected: String::new(),
        source: String::new(),
        remediation: String::new(),
    };
    model::PostureSnapshot {
        generation,
        time: Timestamp::now(),
        imds_mode: "audit".into(),
        checks: failing
            .iter()
            .map(|id| check(id, model::CheckStatus::Fail))
            .chain(passing.iter().map(|id| check(id, model::CheckStatus::Pass)))
            .collect(),
        scan_error: None,
        policy_generation: None,
    }
}

#[tokio::test]
async fn posture_keeps_the_newest_generation_per_stream() {
    let (_dir, store) = store().await;
    let a = origin("node-a", "s1");
    store.record_hello(&a, Timestamp::now()).await.unwrap();
    let now = Timestamp::now();
    assert_eq!(
        store
            .store_posture("node-a", "s1", &snapshot(5, &["x"], &[]), now)
            .await
            .unwrap(),
        PostureOutcome::Stored
    );
    assert_eq!(
        store
            .store_posture("node-a", "s1", &snapshot(4, &[], &["x"]), now)
            .await
            .unwrap(),
        PostureOutcome::Stale
    );
    let node = store.node("node-a").await.unwrap().unwrap();
    assert_eq!(node.posture.unwrap().snapshot.generation, 5);
    assert_eq!(node.cluster, "prod");
    // A new outbox starts its generations anew, and wins.
    assert_eq!(
        store
            .store_posture("node-a", "s2", &snapshot(1, &[], &["x"]), now)
            .await
            .unwrap(),
        PostureOutcome::Stored
    );
    let fleet = store.fleet_posture().await.unwrap();
    assert_eq!((fleet.nodes, fleet.checks[0].passing), (1, 1));
    assert!(store.node("node-z").await.unwrap().is_none());
}

#[tokio::test]
async fn fleet_summary_counts_each_nodes_latest_snapshot() {
    let (_dir, store) = store().await;
    let now = Timestamp::now();
    for (node, failing, passing) in [
        ("node-b", &["x", "y"][..], &[][..]),
        ("node-a", &["x"][..], &["y"][..]),
        ("node-c", &[][..], &[][..]),
    ] {
        store.record_hello(&origin(node, "s"), now).await.unwrap();
        store
            .store_posture(node, "s", &snapshot(1, failing, passing), now)
            .await
            .unwrap();
    }
    store
        .record_hello(&origin("node-d", "s"), now)
        .await
        .unwrap();
    let fleet = store.fleet_posture().await.unwrap();
    assert_eq!(fleet.nodes, 3);
    let ids: Vec<&str> = fleet.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["x", "y"]);
    assert_eq!(fleet.checks[0].failing_nodes, ["node-a", "node-b"]);
    assert_eq!((fleet.checks[1].failing, fleet.checks[1].passing), (1, 1));
    assert_eq!(store.node_counts().await.unwrap(), (4, 0));
}

fn health(rule: &str, node: &str, last_seen: Timestamp) -> Finding {
    Finding {
        category: model::Category::Health,
        ..Finding::new(
            rule,
            Severity::High,
            format!("{node} since {last_seen}"),
            Timestamp::now(),
        )
    }
}

#[tokio::test]
async fn silence_and_return_are_each_stored_once() {
    let (_dir, store) = store().await;
    let long_ago = Timestamp::now() - jiff::SignedDuration::from_mins(10);
    store
        .record_hello(&origin("quiet", "s"), long_ago)
        .await
        .unwrap();
    store
        .record_hello(&origin("busy", "s"), Timestamp::now())
        .await
        .unwrap();
    let cutoff = Timestamp::now() - jiff::SignedDuration::from_mins(5);
    let silent = store
        .mark_silent(cutoff, Timestamp::now(), |node, last| {
            health("node-silent", node, last)
        })
        .await
        .unwrap();
    assert_eq!(silent.len(), 1);
    assert_eq!(
        (silent[0].node_name.as_str(), silent[0].boot_id.as_str()),
        ("quiet", "collector")
    );
    assert!(
        store
            .mark_silent(cutoff, Timestamp::now(), |node, last| health(
                "node-silent",
                node,
                last
            ))
            .await
            .unwrap()
            .is_empty(),
        "marked once"
    );
    assert_eq!(store.node_counts().await.unwrap(), (1, 1));
    // The busy node reporting is no return.
    let none = store
        .seen("busy", Timestamp::now(), |last| {
            health("node-back", "busy", last)
        })
        .await
        .unwrap();
    assert!(none.is_none());
    let back = store
        .seen("quiet", Timestamp::now(), |last| {
            assert_eq!(last, long_ago, "the back finding learns when it went quiet");
            health("node-back", "quiet", last)
        })
        .await
        .unwrap()
        .unwrap();
    assert!(back.id > silent[0].id);
    assert_ne!(
        back.finding.unwrap().seq,
        silent[0].finding.as_ref().unwrap().seq
    );
    assert!(
        store
            .seen("quiet", Timestamp::now(), |_| unreachable!())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.node_counts().await.unwrap(), (2, 0));
}

#[tokio::test]
async fn retention_deletes_old_findings_but_keeps_posture() {
    let (_dir, store) = store().await;
    let a = origin("node-a", "s1");
    store.record_hello(&a, Timestamp::now()).await.unwrap();
    let old = Timestamp::now() - jiff::SignedDuration::from_hours(48);
    store
        .store_posture("node-a", "s1", &snapshot(1, &["x"], &[]), old)
        .await
        .unwrap();
    store
        .insert_findings(&a, vec![finding(1), finding(2)], old)
        .await
        .unwrap();
    // Same second as the cutoff but a later fraction: kept (compared as times, not text).
    let cutoff = Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let just_after = cutoff + jiff::SignedDuration::from_millis(300);
    store
        .insert_findings(&a, vec![finding(3)], just_after)
        .await
        .unwrap();
    store
        .insert_findings(&a, vec![finding(4)], Timestamp::now())
        .await
        .unwrap();
    assert_eq!(store.delete_findings_before(cutoff).await.unwrap(), 2);
    let left: Vec<u64> = store
        .findings_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.finding.as_ref().unwrap().seq)
        .collect();
    assert_eq!(left, [3, 4]);
    assert!(
        store
            .node("node-a")
            .await
            .unwrap()
            .unwrap()
            .posture
            .is_some()
    );
    assert_eq!(store.delete_findings_before(cutoff).await.unwrap(), 0);
}

#[tokio::test]
async fn findings_page_fills_pages_through_decoded_filters() {
    let (_dir, store) = store().await;
    let a = origin("node-a", "s1");
    let findings = (1..=1200)
        .map(|seq| Finding {
            seq,
            // One in a hundred is about a pod in "prod".
            pod: (seq % 100 == 0).then(|| model::Pod {
                uid: "u".into(),
                namespace: "prod".into(),
                ..model::Pod::default()
            }),
            ..finding(seq)
        })
        .collect();
    store
        .insert_findings(&a, findings, Timestamp::now())
        .await
        .unwrap();
    let filter = model::FindingFilter {
        namespaces: vec!["prod".into()],
        ..model::FindingFilter::default()
    };
    let page = store.findings_page(&filter, 0, 5).await.unwrap();
    let seqs: Vec<u64> = page
        .records
        .iter()
        .map(|r| r.finding.as_ref().unwrap().seq)
        .collect();
    assert_eq!(
        seqs,
        [100, 200, 300, 400, 500],
        "a full page across several scans"
    );
    assert!(page.more);
    let rest = store
        .findings_page(&filter, page.records[4].id, 100)
        .await
        .unwrap();
    assert_eq!(rest.records.len(), 7);
    assert!(!rest.more);
    let severe = model::FindingFilter {
        min_severity: Some(Severity::Critical),
        ..model::FindingFilter::default()
    };
    assert!(
        store
            .findings_page(&severe, 0, 10)
            .await
            .unwrap()
            .records
            .is_empty()
    );
}
