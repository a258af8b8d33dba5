//! `node-silent` and `node-back`: the collector's own findings about nodes that stop
//! reporting and come back.
//!
//! A node is heard from whenever its agent sends something, and periodically while its
//! Report stream is open (an idle agent with a live stream is not silent; a dead one's
//! stream ends, at the latest when HTTP/2 keepalive gives up). The task here marks silent
//! every node not heard from for `silenceAfter`; the next time one is heard from,
//! [`Feed::seen`] reports it back. Both findings are stored in the same transaction as
//! the mark, so each is raised exactly once, even across collector restarts.

use std::{sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use nodeward_proto::model::{Category, Finding, Severity};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::feed::Feed;

pub const NODE_SILENT: &str = "node-silent";
pub const NODE_BACK: &str = "node-back";

/// How often the task looks for silent nodes: a quarter of the interval, so a node is
/// reported at most a quarter late, but never more than once a second.
pub fn check_every(silence_after: Duration) -> Duration {
    (silence_after / 4).max(Duration::from_secs(1))
}

/// Marks and reports silent nodes until cancelled.
pub async fn run(feed: Arc<Feed>, silence_after: Duration, token: CancellationToken) {
    let every = check_every(silence_after);
    let after = SignedDuration::try_from(silence_after).unwrap_or(SignedDuration::MAX);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match feed.mark_silent(after).await {
            Ok(0) => {}
            Ok(n) => {
                info!(nodes = n, "nodes went silent");
                feed.metrics().fleet_changed();
            }
            Err(err) => warn!(
                error = format!("{:#}", anyhow::Error::new(err)),
                "looking for silent nodes failed"
            ),
        }
    }
}

/// The finding for a node last heard from at `last_seen`.
pub fn silent_finding(node: &str, last_seen: Timestamp, now: Timestamp) -> Finding {
    let quiet = whole_seconds(now.duration_since(last_seen));
    Finding {
        category: Category::Health,
        description: "The collector has not heard from this node's agent for longer than \
                      silenceAfter: the node, its agent or the network between them may be \
                      down, and nothing it sees reaches the SOC until it reports again."
            .into(),
        last_seen: Some(last_seen),
        ..Finding::new(
            NODE_SILENT,
            Severity::High,
            format!("node {node} has not reported for {quiet:#} (last seen {last_seen})"),
            now,
        )
    }
}

/// The finding for a silent node heard from again; `last_seen` is when it went quiet.
pub fn back_finding(node: &str, last_seen: Timestamp, now: Timestamp) -> Finding {
    let quiet = whole_seconds(now.duration_since(last_seen));
    Finding {
        category: Category::Health,
        description: "A node reported silent is reporting again; its agent resends what it \
                      kept in its outbox meanwhile."
            .into(),
        first_seen: Some(last_seen),
        last_seen: Some(now),
        ..Finding::new(
            NODE_BACK,
            Severity::Info,
            format!("node {node} reports again after {quiet:#} of silence"),
            now,
        )
    }
}

fn whole_seconds(d: SignedDuration) -> SignedDuration {
    SignedDuration::from_secs(d.as_secs().max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_the_node_and_the_silence() {
        let last: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-01-01T00:05:03.25Z".parse().unwrap();
        let silent = silent_finding("node-a", last, now);
        assert_eq!(
            (silent.rule_id.as_str(), silent.severity, silent.category),
            (NODE_SILENT, Severity::High, Category::Health)
        );
        assert_eq!(
            silent.summary,
            "node node-a has not reported for 5m 3s (last seen 2026-01-01T00:00:00Z)"
        );
        let back = back_finding("node-a", last, now);
        assert_eq!(
            (back.rule_id.as_str(), back.severity),
            (NODE_BACK, Severity::Info)
        );
        assert_eq!(
            back.summary,
            "node node-a reports again after 5m 3s of silence"
        );
    }

    #[test]
    fn checks_a_quarter_of_the_interval_but_at_most_every_second() {
        assert_eq!(check_every(Duration::from_mins(5)), Duration::from_secs(75));
        assert_eq!(check_every(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
