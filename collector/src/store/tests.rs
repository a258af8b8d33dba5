use nodeward_proto::model::{Finding, Severity};

use super::*;

pub(crate) mod pg;
mod pg_tls;

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

/// The tests every backend must pass, each taking a fresh, empty store.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::Store::open_sqlite(&dir.path().join("nested/collector.db"))
                        .await
                        .unwrap();
                    super::$name(store).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::pg::TestDb::create(stringify!($name)).await else {
                        return;
                    };
                    super::$name(db.open().await).await;
                    db.drop_schema().await;
                }
            )*
        }
    };
}

backend_tests!(
    resent_findings_are_stored_once,
    same_seq_from_another_node_or_stream_is_distinct,
    findings_after_pages_in_order_and_round_trips,
    posture_keeps_the_newest_generation_per_stream,
    fleet_summary_counts_each_nodes_latest_snapshot,
    silence_and_return_are_each_stored_once,
    retention_deletes_old_findings_but_keeps_posture,
    findings_page_fills_pages_through_decoded_filters,
);

async fn resent_findings_are_stored_once(store: Store) {
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

async fn same_seq_from_another_node_or_stream_is_distinct(store: Store) {
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

async fn findings_after_pages_in_order_and_round_trips(store: Store) {
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

async fn posture_keeps_the_newest_generation_per_stream(store: Store) {
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

async fn fleet_summary_counts_each_nodes_latest_snapshot(store: Store) {
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

async fn silence_and_return_are_each_stored_once(store: Store) {
    // Whole microseconds: PostgreSQL keeps no finer times, and this one is compared exactly.
    let long_ago = Timestamp::from_microsecond(
        (Timestamp::now() - jiff::SignedDuration::from_mins(10)).as_microsecond(),
    )
    .unwrap();
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

async fn retention_deletes_old_findings_but_keeps_posture(store: Store) {
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

async fn findings_page_fills_pages_through_decoded_filters(store: Store) {
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

/// Two collector replicas on one PostgreSQL database: an agent that reconnects to the
/// other replica and resends gets every finding stored once, and a node's return is
/// reported by one replica only.
#[tokio::test]
async fn postgres_replicas_share_one_store_exactly_once() {
    let Some(db) = pg::TestDb::create("postgres_replicas_share_one_store_exactly_once").await
    else {
        return;
    };
    let (one, two) = (db.open().await, db.open().await);
    let a = origin("node-a", "s1");
    one.record_hello(&a, Timestamp::now()).await.unwrap();
    let first = one
        .insert_findings(&a, (1..=3).map(finding).collect(), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    // A batch repeating a seq within itself stores it once too.
    let resent = two
        .insert_findings(
            &a,
            vec![finding(2), finding(3), finding(4), finding(4)],
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        resent
            .iter()
            .map(|r| r.finding.as_ref().unwrap().seq)
            .collect::<Vec<_>>(),
        [4]
    );
    let all = one.findings_after(0, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let cutoff = Timestamp::now() + jiff::SignedDuration::from_mins(1);
    let silent = |node: &str, last| health("node-silent", node, last);
    let (x, y) = tokio::join!(
        one.mark_silent(cutoff, Timestamp::now(), silent),
        two.mark_silent(cutoff, Timestamp::now(), silent)
    );
    assert_eq!(
        x.unwrap().len() + y.unwrap().len(),
        1,
        "silence reported once"
    );
    let back = |last| health("node-back", "node-a", last);
    let (x, y) = tokio::join!(
        one.seen("node-a", Timestamp::now(), back),
        two.seen("node-a", Timestamp::now(), back)
    );
    assert_eq!(
        usize::from(x.unwrap().is_some()) + usize::from(y.unwrap().is_some()),
        1,
        "return reported once"
    );
    // Reopening runs the migrations again: nothing to do, nothing lost.
    assert_eq!(
        db.open().await.last_id().await.unwrap(),
        one.last_id().await.unwrap()
    );
    drop((one, two));
    db.drop_schema().await;
}

/// Two replicas insert at once, the first committing last: a reader that saw the
/// second's finding must never see the first's appear below it (its cursor would have
/// skipped it). Identity ids fail this; feed positions drawn under the feed clock's lock
/// cannot.
#[tokio::test]
async fn postgres_a_late_commit_never_lands_below_a_read_cursor() {
    let Some(db) =
        pg::TestDb::create("postgres_a_late_commit_never_lands_below_a_read_cursor").await
    else {
        return;
    };
    let (one, two) = (db.open().await, db.open().await);
    let Pool::Postgres(pool) = &one.pool else {
        unreachable!("a PostgreSQL store");
    };
    // Replica one's transaction: its finding is inserted, not yet committed.
    let mut early = pool.begin().await.unwrap();
    let key = findings::Key {
        node_name: "node-a",
        stream_id: "s",
        boot_id: "boot",
    };
    let early_records = super::postgres::insert(
        &mut early,
        vec![(key, vec![findings::Row::new(finding(1))])],
        Timestamp::now(),
    )
    .await
    .unwrap();
    // Replica two stores a finding meanwhile.
    let late = tokio::spawn(async move {
        two.insert_findings(&origin("node-b", "s"), vec![finding(1)], Timestamp::now())
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let ids = |records: Vec<v1::FindingRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
    let before = ids(one.findings_after(0, 10).await.unwrap());
    early.commit().await.unwrap();
    let late_records = late.await.unwrap().unwrap();
    let after = ids(one.findings_after(0, 10).await.unwrap());
    assert_eq!(after.len(), 2);
    let cursor = before.iter().max().copied().unwrap_or(0);
    assert!(
        after.iter().all(|id| before.contains(id) || *id > cursor),
        "read {before:?} first, then {after:?}: a reader at cursor {cursor} misses a finding"
    );
    assert!(early_records[0][0].id < late_records[0].id);
    drop(one);
    db.drop_schema().await;
}

/// A replica still running the previous version, during a rolling upgrade, inserts
/// without a feed position: it gets the next one, after everything already stored.
#[tokio::test]
async fn postgres_rows_from_a_previous_version_get_the_next_position() {
    let Some(db) =
        pg::TestDb::create("postgres_rows_from_a_previous_version_get_the_next_position").await
    else {
        return;
    };
    let store = db.open().await;
    let stored = store
        .insert_findings(&origin("node-a", "s"), vec![finding(1)], Timestamp::now())
        .await
        .unwrap();
    let Pool::Postgres(pool) = &store.pool else {
        unreachable!("a PostgreSQL store");
    };
    let body = v1::Finding::from(finding(2)).encode_to_vec();
    // The previous version's statement, less its UNNEST.
    sqlx::query(
        "INSERT INTO findings (node_name, stream_id, seq, boot_id, received_time, time, rule_id, severity, body)
         VALUES ('node-a', 's', 2, 'boot', now(), now(), 'imds-access', 'high', $1)",
    )
    .bind(body)
    .execute(pool)
    .await
    .unwrap();
    let after = store.findings_after(stored[0].id, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].finding.as_ref().unwrap().seq, 2);
    assert!(after[0].id > stored[0].id);
    assert_eq!(store.last_id().await.unwrap(), after[0].id);
    drop(store);
    db.drop_schema().await;
}
