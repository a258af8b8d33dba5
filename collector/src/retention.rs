//! Retention: findings received longer ago than `retention` are deleted periodically.
//! Only the finding log shrinks; each node's latest posture lives in `nodes` and is kept
//! whatever its age, since it is the node's current state, not history.

use std::{sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::Store;

/// How often old findings are deleted: a tenth of the retention, at most hourly, and at
/// least every second (a short retention is a test).
pub fn sweep_every(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_hours(1))
}

/// Deletes old findings now and then every [`sweep_every`], until cancelled.
pub async fn run(store: Arc<Store>, retention: Duration, token: CancellationToken) {
    let keep = SignedDuration::try_from(retention).unwrap_or(SignedDuration::MAX);
    loop {
        let cutoff = Timestamp::now().checked_sub(keep).unwrap_or(Timestamp::MIN);
        match store.delete_findings_before(cutoff).await {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, before = %cutoff, "old findings deleted"),
            Err(err) => warn!(
                error = format!("{:#}", anyhow::Error::new(err)),
                "deleting old findings failed"
            ),
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(sweep_every(retention)) => {}
        }
    }
}
