use jiff::Timestamp;
use nodeward_proto::model::Severity;

use super::*;

fn finding(summary: &str) -> Finding {
    Finding::new("imds-access", Severity::High, summary, Timestamp::now())
}

#[test]
fn sequence_numbers_survive_reopen_and_acks_delete() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), u64::MAX).unwrap();
    let stream = outbox.stream_id().to_owned();
    assert_eq!(outbox.append(finding("a"), None).unwrap(), 1);
    assert_eq!(outbox.append(finding("b"), None).unwrap(), 2);
    drop(outbox);

    let outbox = Outbox::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(
        outbox.stream_id(),
        stream,
        "stream id is kept with the outbox"
    );
    assert_eq!(outbox.append(finding("c"), None).unwrap(), 3);
    let all: Vec<_> = outbox
        .read_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|f| (f.seq, f.summary))
        .collect();
    assert_eq!(all, [(1, "a".into()), (2, "b".into()), (3, "c".into())]);

    assert_eq!(outbox.ack(2).unwrap(), 2);
    assert_eq!(outbox.pending().unwrap(), 1);
    let rest: Vec<_> = outbox
        .read_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|f| f.seq)
        .collect();
    assert_eq!(rest, [3]);
    // Acknowledging again, or beyond what exists, is harmless.
    assert_eq!(outbox.ack(2).unwrap(), 0);
    assert_eq!(
        outbox.append(finding("d"), None).unwrap(),
        4,
        "acks never reuse numbers"
    );
}

#[test]
fn read_after_pages() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), u64::MAX).unwrap();
    for i in 0..5 {
        outbox.append(finding(&i.to_string()), None).unwrap();
    }
    let page: Vec<_> = outbox
        .read_after(2, 2)
        .unwrap()
        .into_iter()
        .map(|f| f.seq)
        .collect();
    assert_eq!(page, [3, 4]);
}

#[test]
fn fresh_outboxes_get_distinct_stream_ids() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_ne!(
        Outbox::open(a.path(), u64::MAX).unwrap().stream_id(),
        Outbox::open(b.path(), u64::MAX).unwrap().stream_id()
    );
}

#[test]
fn unwritable_spool_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = Outbox::open(&file.join("spool"), u64::MAX)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("spool"), "{err}");
}

#[test]
fn counters_persist_and_travel_with_their_finding() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(outbox.counter("lost.imds").unwrap(), 0);
    outbox
        .append(finding("lost 5"), Some(("lost.imds", 5)))
        .unwrap();
    outbox.set_counter("other", 2).unwrap();
    drop(outbox);
    let outbox = Outbox::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(outbox.counter("lost.imds").unwrap(), 5);
    assert_eq!(outbox.counter("other").unwrap(), 2);
    assert_eq!(
        outbox.counter(NEXT_SEQ).unwrap(),
        2,
        "counters share the table with the sequence"
    );
}

#[test]
fn the_bound_drops_the_oldest_counts_them_and_reports_once() {
    let dir = tempfile::tempdir().unwrap();
    let size = {
        let probe = Outbox::open(&dir.path().join("probe"), u64::MAX).unwrap();
        probe.append(finding("x"), None).unwrap();
        probe.bytes().unwrap()
    };
    // Room for three findings of this size.
    let outbox = Outbox::open(dir.path(), 3 * size + size / 2).unwrap();
    for name in ["a", "b", "c", "d", "e"] {
        outbox.append(finding(name), None).unwrap();
    }
    let kept: Vec<_> = outbox
        .read_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|f| f.summary)
        .collect();
    assert_eq!(kept, ["c", "d", "e"], "the oldest go first");
    assert_eq!(
        outbox.dropped().unwrap(),
        Some(Dropped {
            count: 2,
            first_seq: 1,
            last_seq: 2
        })
    );
    assert!(outbox.bytes().unwrap() <= 3 * size + size / 2);

    // The link is back: the collector acknowledges what it got, then the loss is
    // reported (into the room the acknowledgement made).
    outbox.ack(5).unwrap();
    let seq = outbox
        .report_dropped(|d| finding(&format!("lost {}", d.count)))
        .unwrap();
    assert_eq!(seq, Some(6));
    assert_eq!(outbox.dropped().unwrap(), None, "reported once");
    assert_eq!(outbox.report_dropped(|_| finding("again")).unwrap(), None);
    assert_eq!(outbox.dropped_total().unwrap(), 2);
    let last = outbox.read_after(0, 10).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].summary, "lost 2");

    // Acks give the room back.
    outbox.ack(6).unwrap();
    assert_eq!(outbox.bytes().unwrap(), 0);
}

#[test]
fn posture_keeps_the_latest_until_acknowledged_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(outbox.unacked_posture().unwrap(), None);
    let mut first = v1::PostureSnapshot {
        imds_mode: "audit".into(),
        ..Default::default()
    };
    assert_eq!(outbox.put_posture(&mut first).unwrap(), 1);
    let mut second = v1::PostureSnapshot {
        imds_mode: "enforce".into(),
        ..Default::default()
    };
    assert_eq!(outbox.put_posture(&mut second).unwrap(), 2);
    outbox.ack_posture(1).unwrap();
    drop(outbox);
    let outbox = Outbox::open(dir.path(), u64::MAX).unwrap();
    let pending = outbox
        .unacked_posture()
        .unwrap()
        .expect("generation 2 unacked");
    assert_eq!(
        (pending.generation, pending.imds_mode.as_str()),
        (2, "enforce")
    );
    outbox.ack_posture(2).unwrap();
    assert_eq!(outbox.unacked_posture().unwrap(), None);
}
