//! From module events to the outbox. Runs on a blocking thread: resolving a cgroup id may
//! walk the pod cgroup tree and every append is a durable disk write.

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{event::Event, findings::FindingBuilder, outbox::Outbox};

/// Returns when every event sender is gone, after storing all that were queued.
pub fn run(
    mut events: mpsc::Receiver<Event>,
    mut builder: FindingBuilder,
    outbox: &Outbox,
) -> anyhow::Result<()> {
    while let Some(event) = events.blocking_recv() {
        let finding = builder.build(&event);
        let (rule, summary) = (finding.rule_id.clone(), finding.summary.clone());
        match outbox.append(finding) {
            Ok(seq) => info!(seq, rule, summary, "finding"),
            Err(err) => {
                // Losing the outbox means losing findings; stop so the agent is restarted
                // and the failure is visible.
                warn!(rule, summary, "finding could not be stored");
                return Err(err.into());
            }
        }
    }
    Ok(())
}
