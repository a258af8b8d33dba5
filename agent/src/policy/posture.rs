//! Stamps each posture snapshot with the policy generation this node enforces.
//!
//! The posture monitor knows nothing of policies; this sits between it and the outbox. A
//! policy change without a rescan republishes the last snapshot (same posture generation,
//! which the collector accepts as the latest) with the new policy generation.

use std::future::Future;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::posture::PostureReceiver;

/// `snapshots` with `policyGeneration` set from `generation`; the task returns `Ok` when
/// `token` is cancelled or the snapshots end.
pub fn with_policy_generation(
    mut snapshots: PostureReceiver,
    mut generation: watch::Receiver<Option<String>>,
    token: CancellationToken,
) -> (
    PostureReceiver,
    impl Future<Output = anyhow::Result<()>> + Send + use<>,
) {
    let (tx, rx) = watch::channel(None);
    let task = async move {
        let mut generation_open = true;
        loop {
            let stamped = snapshots.borrow_and_update().clone().map(|mut snapshot| {
                snapshot
                    .policy_generation
                    .clone_from(&generation.borrow_and_update());
                snapshot
            });
            tx.send_if_modified(|current| {
                (*current != stamped).then(|| *current = stamped).is_some()
            });
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                changed = snapshots.changed() => if changed.is_err() {
                    return Ok(());
                },
                changed = generation.changed(), if generation_open => {
                    generation_open = changed.is_ok();
                }
            }
        }
    };
    (rx, task)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nodeward_proto::model::PostureSnapshot;

    use super::*;

    #[tokio::test]
    async fn snapshots_carry_the_current_policy_generation() {
        let (snapshot_tx, snapshots) = watch::channel(None);
        let (generation_tx, generation) = watch::channel(Some("a:1".to_owned()));
        let token = CancellationToken::new();
        let (stamped, task) = with_policy_generation(snapshots, generation, token.clone());
        let task = tokio::spawn(task);
        snapshot_tx.send_replace(Some(PostureSnapshot {
            generation: 7,
            time: jiff::Timestamp::UNIX_EPOCH,
            imds_mode: "enforce".into(),
            checks: Vec::new(),
            scan_error: None,
            policy_generation: None,
        }));
        let wait = |want: &'static str| {
            let mut rx = stamped.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    rx.wait_for(|s| {
                        s.as_ref().and_then(|s| s.policy_generation.as_deref()) == Some(want)
                    }),
                )
                .await
                .expect("stamped in time")
                .expect("published")
                .clone()
                .expect("a snapshot")
            }
        };
        assert_eq!(wait("a:1").await.generation, 7);
        generation_tx.send_replace(Some("a:2".to_owned()));
        assert_eq!(wait("a:2").await.generation, 7, "republished as it was");
        token.cancel();
        task.await.unwrap().unwrap();
    }
}
