use nodeward_proto::model::{Finding, Severity};

use super::*;

fn origin(node: &str, stream: &str) -> Origin {
    Origin {
        node_name: node.into(),
        stream_id: stream.into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
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
    store.upsert_node(&a, Timestamp::now()).await.unwrap();
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
