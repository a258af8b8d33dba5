//! From module events to the outbox: build findings, fold repeats, account for losses.
//! Building a finding reads /proc and the cgroup tree and every append is a durable disk
//! write, so that work runs with `block_in_place`.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::info;

use crate::{
    event::Event,
    findings::{self, FindingBuilder, ImdsRepeatKey},
    outbox::Outbox,
    repeats::Repeats,
};

/// How often closed repeat windows are looked for.
const TICK: Duration = Duration::from_secs(1);

/// Returns when every event sender is gone, after storing all that were queued and every
/// pending repeat.
pub async fn run(
    mut events: mpsc::Receiver<Event>,
    mut builder: FindingBuilder,
    outbox: Outbox,
    repeat_window: Duration,
) -> anyhow::Result<()> {
    let mut repeats: Repeats<ImdsRepeatKey> = Repeats::new(repeat_window);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Imds { event, count }) => {
                    let finding = tokio::task::block_in_place(|| builder.imds(&event, count));
                    if let Some(finding) = repeats.admit(findings::imds_repeat_key(&event), finding, Instant::now()) {
                        store(&outbox, finding, None)?;
                    }
                }
                Some(Event::Lost { source, total }) => account_losses(&outbox, source, total)?,
                None => break,
            },
            _ = tick.tick() => {
                for finding in repeats.due(Instant::now()) {
                    store(&outbox, finding, None)?;
                }
            }
        }
    }
    for finding in repeats.drain() {
        store(&outbox, finding, None)?;
    }
    Ok(())
}

/// Reports losses past what was reported before (kept in the outbox, so a restart neither
/// repeats nor forgets them). A total below that means the kernel counters were recreated.
fn account_losses(outbox: &Outbox, source: &str, total: u64) -> anyhow::Result<()> {
    let name = format!("lost.{source}");
    tokio::task::block_in_place(|| {
        let reported = outbox.counter(&name)?;
        let base = if total < reported { 0 } else { reported };
        if total > base {
            store(
                outbox,
                findings::lost(source, total - base),
                Some((&name, total)),
            )
        } else if total != reported {
            Ok(outbox.set_counter(&name, total)?)
        } else {
            Ok(())
        }
    })
}

fn store(
    outbox: &Outbox,
    finding: nodeward_proto::model::Finding,
    counter: Option<(&str, u64)>,
) -> anyhow::Result<()> {
    let (rule, summary) = (finding.rule_id.clone(), finding.summary.clone());
    let seq = tokio::task::block_in_place(|| outbox.append(finding, counter))?;
    info!(seq, rule, summary, "finding");
    Ok(())
}
