use jiff::Timestamp;
use nodeward_proto::model::Severity;

use super::*;

fn finding(summary: &str) -> Finding {
    Finding::new("imds-access", Severity::High, summary, Timestamp::now())
}

#[test]
fn sequence_numbers_survive_reopen_and_acks_delete() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    let stream = outbox.stream_id().to_owned();
    assert_eq!(outbox.append(finding("a"), None).unwrap(), 1);
    assert_eq!(outbox.append(finding("b"), None).unwrap(), 2);
    drop(outbox);

    let outbox = Outbox::open(dir.path()).unwrap();
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
    let outbox = Outbox::open(dir.path()).unwrap();
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
        Outbox::open(a.path()).unwrap().stream_id(),
        Outbox::open(b.path()).unwrap().stream_id()
    );
}

#[test]
fn unwritable_spool_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = Outbox::open(&file.join("spool")).err().unwrap().to_string();
    assert!(err.contains("spool"), "{err}");
}

#[test]
fn counters_persist_and_travel_with_their_finding() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    assert_eq!(outbox.counter("lost.imds").unwrap(), 0);
    outbox
        .append(finding("lost 5"), Some(("lost.imds", 5)))
        .unwrap();
    outbox.set_counter("other", 2).unwrap();
    drop(outbox);
    let outbox = Outbox::open(dir.path()).unwrap();
    assert_eq!(outbox.counter("lost.imds").unwrap(), 5);
    assert_eq!(outbox.counter("other").unwrap(), 2);
    assert_eq!(
        outbox.counter(NEXT_SEQ).unwrap(),
        2,
        "counters share the table with the sequence"
    );
}
