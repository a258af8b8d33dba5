//! The collector's Prometheus metrics (all prefixed `nodeward_`).
//!
//! Counters and stream gauges are updated where things happen; the fleet gauges (nodes
//! reporting and silent, posture failures by check) are recomputed from the store by
//! [`refresh_fleet`], whenever posture or a node's state changes and on a timer.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use nodeward_proto::v1;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{counter::ConstCounter, counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{export::ExportStats, store::Store};

/// Recompute the fleet gauges at least this often, even when nothing rang.
const FLEET_REFRESH: Duration = Duration::from_mins(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    rule: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
}

/// Which acknowledgement was sent.
#[derive(Clone, Copy, Debug)]
pub enum AckKind {
    Findings,
    Posture,
}

/// Which kind of long-lived stream is open.
#[derive(Clone, Copy, Debug)]
pub enum StreamKind {
    /// `AgentService.Report`.
    Agent,
    /// `SocService.Subscribe`.
    Soc,
}

#[derive(Debug, Default)]
pub struct Metrics {
    findings_stored: Family<FindingLabels, Counter>,
    /// Transactions the ingest writer committed, and the agents' batches they held.
    ingest_commits: Counter,
    ingest_batches: Counter,
    acks_sent: Family<KindLabel, Counter>,
    streams_open: Family<KindLabel, Gauge>,
    nodes_reporting: Gauge,
    nodes_silent: Gauge,
    posture_failures: Family<CheckLabel, Gauge>,
    enrollments: Family<OutcomeLabel, Counter>,
    /// The checks `posture_failures` has a series for, to drop those that disappear.
    checks: Mutex<BTreeSet<String>>,
    /// Rung when the fleet changed (posture, hello, silence): the gauges are stale.
    fleet_changed: Notify,
}

impl Metrics {
    /// Registers every metric, and the export counters when an exporter runs.
    pub fn register(&self, registry: &mut Registry, export: Option<Arc<ExportStats>>) {
        registry.register(
            "findings_stored",
            "Findings stored (each once), by rule and severity",
            self.findings_stored.clone(),
        );
        registry.register(
            "ingest_commits",
            "Transactions that stored agents' finding batches (group commit: one may hold many)",
            self.ingest_commits.clone(),
        );
        registry.register(
            "ingest_batches",
            "Agents' finding batches committed; divided by ingest_commits, the group size",
            self.ingest_batches.clone(),
        );
        registry.register(
            "acks_sent",
            "Acknowledgements sent to agents, by kind (findings, posture)",
            self.acks_sent.clone(),
        );
        registry.register(
            "streams_open",
            "Open streams, by kind (agent: Report, soc: Subscribe)",
            self.streams_open.clone(),
        );
        registry.register(
            "nodes_reporting",
            "Known nodes that are not silent",
            self.nodes_reporting.clone(),
        );
        registry.register(
            "nodes_silent",
            "Known nodes that stopped reporting for longer than silenceAfter",
            self.nodes_silent.clone(),
        );
        registry.register(
            "posture_failures",
            "Nodes whose latest posture snapshot fails the check, by check id",
            self.posture_failures.clone(),
        );
        registry.register(
            "enrollments",
            "Agent certificate requests, by outcome (issued, or why they were refused)",
            self.enrollments.clone(),
        );
        if let Some(stats) = export {
            registry.register_collector(Box::new(ExportCollector(stats)));
        }
        // Series that exist from the start read 0 rather than absent, so rates and
        // alerts work before the first agent connects.
        for kind in ["agent", "soc"] {
            drop(self.streams_open.get_or_create(&KindLabel { kind }));
        }
        for kind in ["findings", "posture"] {
            drop(self.acks_sent.get_or_create(&KindLabel { kind }));
        }
        for outcome in crate::enroll::OUTCOMES {
            drop(self.enrollments.get_or_create(&OutcomeLabel { outcome }));
        }
    }

    /// Counts an enrollment request by its outcome (`issued` or a refusal's reason).
    pub fn enrollment(&self, outcome: &'static str) {
        self.enrollments
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn finding_stored(&self, record: &v1::FindingRecord) {
        let Some(finding) = &record.finding else {
            return;
        };
        let severity = v1::Severity::try_from(finding.severity)
            .map_or("unspecified", |s| s.as_str_name())
            .trim_start_matches("SEVERITY_")
            .to_ascii_lowercase();
        self.findings_stored
            .get_or_create(&FindingLabels {
                rule: finding.rule_id.clone(),
                severity,
            })
            .inc();
    }

    /// One transaction committed `batches` agents' batches.
    pub fn batches_committed(&self, batches: usize) {
        self.ingest_commits.inc();
        self.ingest_batches
            .inc_by(u64::try_from(batches).unwrap_or(u64::MAX));
    }

    /// (transactions, batches) the ingest writer committed so far.
    #[cfg(test)]
    pub fn ingest_commits(&self) -> (u64, u64) {
        (self.ingest_commits.get(), self.ingest_batches.get())
    }

    pub fn ack_sent(&self, kind: AckKind) {
        let kind = match kind {
            AckKind::Findings => "findings",
            AckKind::Posture => "posture",
        };
        self.acks_sent.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts a stream as open until the guard is dropped.
    pub fn stream_open(self: &Arc<Self>, kind: StreamKind) -> StreamGuard {
        let kind = match kind {
            StreamKind::Agent => "agent",
            StreamKind::Soc => "soc",
        };
        self.streams_open.get_or_create(&KindLabel { kind }).inc();
        StreamGuard {
            metrics: self.clone(),
            kind,
        }
    }

    /// Says the fleet gauges are stale.
    pub fn fleet_changed(&self) {
        self.fleet_changed.notify_one();
    }

    /// Recomputes the fleet gauges from the store.
    pub async fn refresh_fleet(&self, store: &Store) -> crate::store::Result<()> {
        let (reporting, silent) = store.node_counts().await?;
        self.nodes_reporting.set(gauge(reporting));
        self.nodes_silent.set(gauge(silent));
        let fleet = store.fleet_posture().await?;
        let mut known = self
            .checks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut now = BTreeSet::new();
        for check in fleet.checks {
            self.posture_failures
                .get_or_create(&CheckLabel {
                    check: check.id.clone(),
                })
                .set(i64::from(check.failing));
            now.insert(check.id);
        }
        for gone in known.difference(&now) {
            self.posture_failures.remove(&CheckLabel {
                check: gone.clone(),
            });
        }
        *known = now;
        Ok(())
    }
}

/// Keeps the fleet gauges current until cancelled.
pub async fn refresh_fleet(metrics: Arc<Metrics>, store: Arc<Store>, token: CancellationToken) {
    loop {
        if let Err(err) = metrics.refresh_fleet(&store).await {
            warn!(
                error = format!("{:#}", anyhow::Error::new(err)),
                "refreshing the fleet metrics failed"
            );
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = metrics.fleet_changed.notified() => {}
            () = tokio::time::sleep(FLEET_REFRESH) => {}
        }
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Decrements the open-streams gauge when the stream ends, however it ends.
pub struct StreamGuard {
    metrics: Arc<Metrics>,
    kind: &'static str,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics
            .streams_open
            .get_or_create(&KindLabel { kind: self.kind })
            .dec();
    }
}

/// Reads the exporter's own counters at scrape time, so they need no second copy.
#[derive(Debug)]
struct ExportCollector(Arc<ExportStats>);

impl Collector for ExportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in [
            (
                "exported",
                "Findings delivered by an export sink (counted per sink)",
                self.0.exported(),
            ),
            (
                "export_failures",
                "Findings an export sink gave up on, or that could not be encoded",
                self.0.failures(),
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::prometheus_text::encode;

    use super::*;

    #[test]
    fn families_are_named_and_streams_counted() {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("nodeward");
        metrics.register(&mut registry, Some(Arc::default()));
        let guard = metrics.stream_open(StreamKind::Soc);
        metrics.ack_sent(AckKind::Posture);
        metrics.enrollment("pod_gone");
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for needle in [
            "nodeward_streams_open{kind=\"soc\"} 1",
            "nodeward_acks_sent_total{kind=\"posture\"} 1",
            "nodeward_exported_total 0",
            "nodeward_export_failures_total 0",
            "# TYPE nodeward_nodes_silent gauge",
            "nodeward_enrollments_total{outcome=\"pod_gone\"} 1",
            "nodeward_enrollments_total{outcome=\"issued\"} 0",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        drop(guard);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("nodeward_streams_open{kind=\"soc\"} 0"),
            "{text}"
        );
    }
}
