//! Group commit: batches from many agents share transactions, each is acknowledged only
//! once its findings are readable, a batch the database refuses fails alone, and a full
//! queue makes agents wait rather than dropping anything.

use std::{sync::Arc, time::Duration};

use tokio::{task::JoinSet, time::Instant};

use super::{backend::Backend, batch, finding, node_filter, origin};
use crate::feed::{
    Feed, IngestError,
    writer::{MAX_GROUP_BATCHES, QUEUE},
};

const PER_BATCH: u64 = 5;

/// Waits (with a deadline) until at least `n` batches wait in the writer's queue.
async fn wait_queued(feed: &Feed, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while QUEUE - feed.jobs.capacity() < n {
        assert!(
            Instant::now() < deadline,
            "{n} batches never queued (queued: {})",
            QUEUE - feed.jobs.capacity()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The findings stored for `node`, by seq.
async fn stored_seqs(store: &crate::store::Store, node: &str) -> Vec<u64> {
    let page = store
        .findings_page(&node_filter(node), 0, 1000)
        .await
        .unwrap();
    page.records
        .iter()
        .map(|r| r.finding.as_ref().unwrap().seq)
        .collect()
}

mod sqlite {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_follow_commits_and_batches_share_them() {
        super::acks_follow_commits_and_batches_share_them(Backend::sqlite()).await;
    }
}

mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_follow_commits_and_batches_share_them() {
        let Some(backend) = Backend::postgres("acks_follow_commits_and_batches_share_them").await
        else {
            return;
        };
        super::acks_follow_commits_and_batches_share_them(backend).await;
    }
}

async fn acks_follow_commits_and_batches_share_them(backend: Backend) {
    const AGENTS: usize = 40;
    let feed = Arc::new(Feed::new(Arc::new(backend.open().await)));
    // Another collector's connections: what it reads is committed.
    let reader = Arc::new(backend.open().await);
    let stall = backend.stall().await;
    let mut agents = JoinSet::new();
    for agent in 0..AGENTS {
        let (feed, reader) = (feed.clone(), reader.clone());
        agents.spawn(async move {
            let node = format!("node-{agent}");
            let new = feed
                .ingest(&origin(&node), batch(1, PER_BATCH))
                .await
                .unwrap();
            assert_eq!(new, 5);
            assert_eq!(
                stored_seqs(&reader, &node).await,
                [1, 2, 3, 4, 5],
                "{node} was acknowledged before its findings were readable"
            );
        });
        if agent == 0 {
            // The writer takes it and waits on the lock; the others queue behind.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    wait_queued(&feed, AGENTS - 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        agents.try_join_next().is_none(),
        "a batch was acknowledged while no transaction could commit"
    );
    assert_eq!(feed.metrics().ingest_commits(), (0, 0));
    stall.release().await;
    agents.join_all().await;
    let (commits, batches) = feed.metrics().ingest_commits();
    assert_eq!(batches, 40);
    assert!(
        commits <= 2,
        "{batches} queued batches took {commits} transactions"
    );
    assert_eq!(reader.findings_after(0, 1000).await.unwrap().len(), 200);
    drop((feed, reader));
    backend.finish().await;
}

/// PostgreSQL refuses a NUL character in text, so a batch holding one cannot be stored;
/// the agents whose batches were grouped with it must not fail with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_refused_batch_fails_alone() {
    const GOOD: usize = 20;
    let Some(backend) = Backend::postgres("postgres_a_refused_batch_fails_alone").await else {
        return;
    };
    let feed = Arc::new(Feed::new(Arc::new(backend.open().await)));
    let stall = backend.stall().await;
    let mut agents = JoinSet::new();
    let mut spawn = |node: String, findings| {
        let feed = feed.clone();
        agents.spawn(async move {
            let outcome = feed.ingest(&origin(&node), findings).await;
            (node, outcome)
        });
    };
    spawn("first".into(), batch(1, PER_BATCH));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for agent in 0..GOOD {
        spawn(format!("node-{agent}"), batch(1, PER_BATCH));
    }
    let bad = nodeward_proto::model::Finding {
        rule_id: "bad\0rule".into(),
        ..finding(1)
    };
    spawn("bad".into(), vec![bad]);
    // Everything but "first" (which the writer holds) is queued: one group.
    wait_queued(&feed, GOOD + 1).await;
    stall.release().await;
    let mut failed = Vec::new();
    for (node, outcome) in agents.join_all().await {
        match outcome {
            Ok(new) => assert_eq!(new, 5, "{node}"),
            Err(IngestError::Store(_)) => failed.push(node),
            Err(err) => panic!("{node}: {err:?}"),
        }
    }
    assert_eq!(failed, ["bad"]);
    let store = feed.store();
    for node in (0..GOOD)
        .map(|a| format!("node-{a}"))
        .chain(["first".into()])
    {
        assert_eq!(stored_seqs(store, &node).await, [1, 2, 3, 4, 5], "{node}");
    }
    assert!(stored_seqs(store, "bad").await.is_empty());
    drop(feed);
    backend.finish().await;
}

/// More waiting batches than the queue holds: senders wait for room, and every batch is
/// stored and acknowledged once the store moves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_full_queue_makes_agents_wait() {
    // Whatever the writer took before it stalled, the queue fills and some wait.
    const AGENTS: usize = MAX_GROUP_BATCHES + QUEUE + 20;
    let Some(backend) = Backend::postgres("postgres_a_full_queue_makes_agents_wait").await else {
        return;
    };
    let feed = Arc::new(Feed::new(Arc::new(backend.open().await)));
    let stall = backend.stall().await;
    let mut agents = JoinSet::new();
    for agent in 0..AGENTS {
        let feed = feed.clone();
        agents.spawn(async move {
            let node = format!("node-{agent}");
            feed.ingest(&origin(&node), vec![finding(1)]).await
        });
    }
    wait_queued(&feed, QUEUE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        agents.try_join_next().is_none(),
        "a batch was answered while the store could not commit"
    );
    stall.release().await;
    for outcome in agents.join_all().await {
        assert_eq!(outcome.unwrap(), 1);
    }
    assert_eq!(
        feed.store().findings_after(0, 1000).await.unwrap().len(),
        AGENTS
    );
    drop(feed);
    backend.finish().await;
}
