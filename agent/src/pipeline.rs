//! From module events to the outbox: judge them, fold repeats, account for losses.
//! Judging reads /proc and the cgroup tree and every append is a durable disk write, so
//! that work runs with `block_in_place`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use nodeward_proto::model::Finding;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::{
    config::Config,
    detect::{
        Detector,
        imds::{self, ImdsRepeatKey},
    },
    event::Event,
    findings,
    metrics::Metrics,
    outbox::Outbox,
    pods::PodSnapshot,
    repeats::Repeats,
    rules::RuleSet,
};

/// How often held events and closed repeat windows are looked for.
const TICK: Duration = Duration::from_millis(250);
/// Events taken from the channel at once.
const BATCH: usize = 256;

/// What the pipeline watches besides events.
pub struct Inputs {
    pub config: watch::Receiver<Arc<Config>>,
    pub pods: watch::Receiver<PodSnapshot>,
    pub metrics: Arc<Metrics>,
}

/// Where findings go: the outbox, counted.
struct Sink {
    outbox: Outbox,
    metrics: Arc<Metrics>,
}

/// Returns when every event sender is gone, after storing all that were queued, every
/// held event and every pending repeat.
pub async fn run(
    mut events: mpsc::Receiver<Event>,
    mut detector: Detector,
    outbox: Outbox,
    mut inputs: Inputs,
) -> anyhow::Result<()> {
    let window = Duration::from_secs(u64::from(inputs.config.borrow().imds.repeat_window_seconds));
    let mut imds_repeats: Repeats<ImdsRepeatKey> = Repeats::new(window);
    let mut tick = tokio::time::interval(TICK);
    let mut handled = Handled::default();
    let sink = Sink {
        outbox,
        metrics: inputs.metrics.clone(),
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let findings = tokio::select! {
            received = events.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    break;
                }
                // One hand-off to blocking context per batch, not per event: under an
                // exec storm that hand-off was most of the agent's cost per event. An
                // event is counted once what it led to is in the outbox, so the count
                // never runs ahead of what a crash would keep.
                tokio::task::block_in_place(|| {
                    for event in batch.drain(..) {
                        handled.count(&event);
                        let counted = !matches!(event, Event::Lost { .. } | Event::Health(_));
                        let source = counted.then(|| event.source());
                        for finding in handle(event, &mut detector, &mut imds_repeats, &sink)? {
                            store(&sink, finding, None)?;
                        }
                        if let Some(source) = source {
                            sink.metrics.event(source);
                        }
                    }
                    anyhow::Ok(Vec::new())
                })?
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let mut due = tokio::task::block_in_place(|| detector.on_tick(now));
                due.extend(imds_repeats.due(now));
                due
            }
            Ok(()) = inputs.pods.changed() => tokio::task::block_in_place(|| detector.on_tick(Instant::now())),
            Ok(()) = inputs.config.changed() => {
                let rules = inputs.config.borrow().rules.clone();
                match RuleSet::build(&rules) {
                    Ok(rules) => {
                        info!("detection rules reloaded");
                        detector.set_rules(rules);
                    }
                    Err(error) => warn!(%error, "detection rules not reloaded"),
                }
                Vec::new()
            }
        };
        // Events store their findings as they are judged; what the other branches bring
        // is stored here, without a hand-off when there is nothing.
        if !findings.is_empty() {
            tokio::task::block_in_place(|| {
                findings
                    .into_iter()
                    .try_for_each(|finding| store(&sink, finding, None))
            })?;
        }
    }
    let now = Instant::now();
    tokio::task::block_in_place(|| {
        detector
            .drain(now)
            .into_iter()
            .chain(imds_repeats.drain())
            .try_for_each(|finding| store(&sink, finding, None))
    })?;
    info!(
        exec = handled.exec,
        egress = handled.egress,
        imds = handled.imds,
        lost_exec = handled.lost_exec,
        lost_egress = handled.lost_egress,
        lost_imds = handled.lost_imds,
        "events handled"
    );
    Ok(())
}

/// What the pipeline saw in this agent's life, logged when it stops (benchmarks read it);
/// losses are the kernel's running totals.
#[derive(Default)]
struct Handled {
    exec: u64,
    egress: u64,
    imds: u64,
    lost_exec: u64,
    lost_egress: u64,
    lost_imds: u64,
}

impl Handled {
    fn count(&mut self, event: &Event) {
        match event {
            Event::Exec(_) => self.exec += 1,
            Event::Egress(_) => self.egress += 1,
            Event::Imds { .. } => self.imds += 1,
            Event::Lost {
                source: "exec",
                total,
            } => self.lost_exec = *total,
            Event::Lost {
                source: "egress",
                total,
            } => self.lost_egress = *total,
            Event::Lost { total, .. } => self.lost_imds = *total,
            Event::Health(_) => {}
        }
    }
}

/// Judges one event; blocking (reads /proc and the cgroup tree, and a loss report writes
/// the outbox).
fn handle(
    event: Event,
    detector: &mut Detector,
    imds_repeats: &mut Repeats<ImdsRepeatKey>,
    sink: &Sink,
) -> anyhow::Result<Vec<Finding>> {
    let now = Instant::now();
    Ok(match event {
        Event::Imds { event, count } => {
            let finding = detector.imds(&event, count);
            imds_repeats
                .admit(imds::repeat_key(&event), finding, now)
                .into_iter()
                .collect()
        }
        Event::Exec(exec) => detector.on_exec(*exec, now),
        Event::Egress(egress) => detector.on_egress(egress, now),
        Event::Lost { source, total } => {
            account_losses(sink, source, total)?;
            Vec::new()
        }
        Event::Health(finding) => vec![*finding],
    })
}

/// Reports losses past what was reported before (kept in the outbox, so a restart neither
/// repeats nor forgets them). A total below that means the kernel counters were recreated.
fn account_losses(sink: &Sink, source: &'static str, total: u64) -> anyhow::Result<()> {
    let name = format!("lost.{source}");
    let outbox = &sink.outbox;
    let reported = outbox.counter(&name)?;
    let base = if total < reported { 0 } else { reported };
    if total > base {
        sink.metrics.lost(source, total - base);
        store(
            sink,
            findings::lost(source, total - base),
            Some((&name, total)),
        )
    } else if total != reported {
        Ok(outbox.set_counter(&name, total)?)
    } else {
        Ok(())
    }
}

/// Appends to the outbox: a durable write, so blocking.
fn store(sink: &Sink, finding: Finding, counter: Option<(&str, u64)>) -> anyhow::Result<()> {
    let (rule, summary) = (finding.rule_id.clone(), finding.summary.clone());
    sink.metrics.finding(&finding);
    let seq = sink.outbox.append(finding, counter)?;
    info!(seq, rule, summary, "finding");
    Ok(())
}
