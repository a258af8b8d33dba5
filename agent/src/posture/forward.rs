//! From the monitor to the collector: each published snapshot becomes the node's latest
//! posture in the outbox (which numbers it with its own persistent generation), and each
//! check that got worse a `posture-regression` or `posture-unverifiable` finding.

use std::sync::Arc;

use anyhow::Context as _;
use nodeward_proto::{model::CheckStatus, v1};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{PostureReceiver, regressions::Baseline};
use crate::{metrics::Metrics, outbox::Outbox};

/// Stores what `snapshots` publishes until `token` is cancelled or the monitor ends. Only
/// the newest snapshot matters: one replaced before this task saw it is skipped, and
/// regressions are judged against the last snapshot stored that had checks.
pub async fn to_outbox(
    mut snapshots: PostureReceiver,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut baseline = Baseline::default();
    loop {
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            changed = snapshots.changed() => if changed.is_err() {
                return Ok(());
            },
        }
        let Some(snapshot) = snapshots.borrow_and_update().clone() else {
            continue;
        };
        let findings = baseline.observe(&snapshot, snapshot.time);
        metrics.posture(
            snapshot.failing().count(),
            snapshot
                .checks
                .iter()
                .filter(|c| c.status == CheckStatus::Error)
                .count(),
        );
        let (outbox, metrics) = (outbox.clone(), metrics.clone());
        let generation = tokio::task::spawn_blocking(move || {
            for finding in findings {
                info!(
                    rule = finding.rule_id,
                    summary = finding.summary,
                    "posture got worse"
                );
                metrics.finding(&finding);
                outbox.append(finding, None)?;
            }
            outbox.put_posture(&mut v1::PostureSnapshot::from(snapshot))
        })
        .await?
        .context("storing the posture snapshot in the outbox")?;
        tracing::debug!(generation, "posture snapshot queued for the collector");
    }
}
