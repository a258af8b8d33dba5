//! Several collector replicas on one PostgreSQL database: a SOC subscriber connected to
//! one sees every finding stored through any of them, once, in cursor order, and
//! resuming from any cursor (on either replica) yields exactly the rest.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use nodeward_proto::v1::{self, SubscribeRequest, soc_service_server::SocService as _};
use tokio::task::JoinSet;
use tokio_stream::{Stream, StreamExt as _};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Status};

use super::{backend::Backend, batch, origin};
use crate::{feed::Feed, soc_service::SocApi};

const AGENTS_PER_REPLICA: usize = 8;
const BATCHES: u64 = 15;
const PER_BATCH: u64 = 4;

/// A Subscribe call on `feed`'s replica, as a SOC client makes it.
async fn subscribe(
    feed: &Arc<Feed>,
    after_id: Option<u64>,
) -> impl Stream<Item = Result<v1::FindingRecord, Status>> + use<> {
    let api = SocApi::new(feed.clone(), TaskTracker::new(), CancellationToken::new());
    api.subscribe(Request::new(SubscribeRequest {
        after_id,
        filter: None,
    }))
    .await
    .unwrap()
    .into_inner()
}

/// The next `n` records, then checks that nothing more comes for a moment.
async fn take_exactly(
    stream: &mut (impl Stream<Item = Result<v1::FindingRecord, Status>> + Unpin),
    n: usize,
) -> Vec<v1::FindingRecord> {
    let mut records = Vec::with_capacity(n);
    let read = tokio::time::timeout(Duration::from_mins(1), async {
        while records.len() < n {
            records.push(stream.next().await.expect("the feed ended").unwrap());
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "only {} of {n} findings arrived within 60 s",
        records.len()
    );
    let extra = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    assert!(extra.is_err(), "more than {n} findings: {extra:?}");
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_feed_every_finding_once_in_cursor_order() {
    let Some(backend) =
        Backend::postgres("postgres_replicas_feed_every_finding_once_in_cursor_order").await
    else {
        return;
    };
    let replicas = [
        Arc::new(Feed::new(Arc::new(backend.open().await))),
        Arc::new(Feed::new(Arc::new(backend.open().await))),
    ];
    // Live from now (nothing is stored yet), on replica 0.
    let mut live = Box::pin(subscribe(&replicas[0], None).await);
    let mut agents = JoinSet::new();
    for (replica, feed) in replicas.iter().enumerate() {
        for agent in 0..AGENTS_PER_REPLICA {
            let feed = feed.clone();
            agents.spawn(async move {
                let origin = origin(&format!("node-{replica}-{agent}"));
                for n in 0..BATCHES {
                    let stored = feed
                        .ingest(&origin, batch(n * PER_BATCH + 1, PER_BATCH))
                        .await
                        .unwrap();
                    assert_eq!(stored, 4);
                }
            });
        }
    }
    let total = 2 * AGENTS_PER_REPLICA * usize::try_from(BATCHES * PER_BATCH).unwrap();
    let seen = take_exactly(&mut live, total).await;
    agents.join_all().await;

    let ids: Vec<u64> = seen.iter().map(|r| r.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "the feed is not in cursor order"
    );
    let keys: BTreeSet<(String, u64)> = seen
        .iter()
        .map(|r| (r.node_name.clone(), r.finding.as_ref().unwrap().seq))
        .collect();
    assert_eq!(keys.len(), total, "a finding was delivered twice");
    for replica in 0..2 {
        for agent in 0..AGENTS_PER_REPLICA {
            for seq in 1..=BATCHES * PER_BATCH {
                assert!(
                    keys.contains(&(format!("node-{replica}-{agent}"), seq)),
                    "node-{replica}-{agent} seq {seq} never reached the subscriber"
                );
            }
        }
    }

    // Resuming from any cursor yields exactly the rest, on either replica, live or
    // listed page by page.
    for cut in [0, 1, total / 3, total / 2, total - 1, total] {
        let cursor = if cut == 0 { 0 } else { ids[cut - 1] };
        let rest = &ids[cut..];
        for feed in &replicas {
            let mut resumed = Box::pin(subscribe(feed, Some(cursor)).await);
            let got: Vec<u64> = take_exactly(&mut resumed, rest.len())
                .await
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(got, rest, "Subscribe resumed after {cursor}");
        }
        let mut listed = Vec::new();
        let mut after = cursor;
        loop {
            let page = replicas[1].store().findings_after(after, 97).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            listed.extend(page.iter().map(|r| r.id));
        }
        assert_eq!(listed, rest, "findings listed after {cursor}");
    }
    drop(replicas);
    backend.finish().await;
}
