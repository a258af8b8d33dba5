//! The agent's Prometheus metrics (prefixed `nodeward_`), served with `/healthz` and
//! `/readyz` on `httpListen`. Counters are bumped where things happen; the spool gauges
//! are read from the outbox at scrape time, so they are never stale.

use std::sync::Arc;

use nodeward_proto::model::Finding;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        counter::ConstCounter, counter::Counter, family::Family, gauge::ConstGauge, gauge::Gauge,
    },
    registry::Registry,
};

use crate::outbox::Outbox;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    rule: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Every metric the agent updates.
#[derive(Debug, Default)]
pub struct Metrics {
    findings: Family<FindingLabels, Counter>,
    events: Family<SourceLabel, Counter>,
    events_lost: Family<SourceLabel, Counter>,
    acked: Counter,
    reconnects: Counter,
    posture_failing: Gauge,
    posture_errors: Gauge,
    enrollments: Family<OutcomeLabel, Counter>,
    node_guard_interfaces: Gauge,
    node_guard_failing: Gauge,
    packet_guards: Gauge,
}

impl Metrics {
    /// A finding stored in the outbox.
    pub fn finding(&self, finding: &Finding) {
        self.findings
            .get_or_create(&FindingLabels {
                rule: finding.rule_id.clone(),
                severity: format!("{:?}", finding.severity).to_lowercase(),
            })
            .inc();
    }

    /// A kernel event handled, by sensor (`exec`, `egress`, `imds`).
    pub fn event(&self, source: &'static str) {
        self.events.get_or_create(&SourceLabel { source }).inc();
    }

    /// Events the kernel could not deliver, newly counted.
    pub fn lost(&self, source: &'static str, count: u64) {
        self.events_lost
            .get_or_create(&SourceLabel { source })
            .inc_by(count);
    }

    /// Findings the collector acknowledged.
    pub fn acked(&self, count: u64) {
        self.acked.inc_by(count);
    }

    /// A new collector stream after a failure.
    pub fn reconnect(&self) {
        self.reconnects.inc();
    }

    /// A certificate request to the collector: `issued`, `refused` (by the collector) or
    /// `failed` (it could not be asked).
    pub fn enrollment(&self, outcome: &'static str) {
        self.enrollments
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// The latest posture snapshot's failing and unjudgeable checks.
    pub fn posture(&self, failing: usize, errors: usize) {
        self.posture_failing
            .set(i64::try_from(failing).unwrap_or(i64::MAX));
        self.posture_errors
            .set(i64::try_from(errors).unwrap_or(i64::MAX));
    }

    /// The node-side IMDS guard after a pass: the interfaces it is on, and whether the pass
    /// failed (then the interfaces are those of the last pass that worked).
    pub fn node_guard(&self, interfaces: Option<usize>) {
        match interfaces {
            Some(count) => {
                self.node_guard_interfaces
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
                self.node_guard_failing.set(0);
            }
            None => {
                self.node_guard_failing.set(1);
            }
        }
    }

    /// How many cgroups carry their own IMDS packet hook.
    pub fn packet_guards(&self, count: usize) {
        self.packet_guards
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A registry with every metric and the outbox's gauges.
    pub fn registry(self: &Arc<Self>, outbox: Outbox) -> Registry {
        let mut registry = Registry::with_prefix("nodeward");
        registry.register(
            "findings",
            "Findings made and stored in the outbox, by rule and severity",
            self.findings.clone(),
        );
        registry.register(
            "events",
            "Kernel events handled, by sensor",
            self.events.clone(),
        );
        registry.register(
            "events_lost",
            "Kernel events that could not be delivered (ring buffer full), by sensor",
            self.events_lost.clone(),
        );
        registry.register(
            "acknowledged",
            "Findings the collector acknowledged",
            self.acked.clone(),
        );
        registry.register(
            "reconnects",
            "Collector streams opened again after a failure",
            self.reconnects.clone(),
        );
        registry.register(
            "posture_failing_checks",
            "Checks failing in the latest posture snapshot",
            self.posture_failing.clone(),
        );
        registry.register(
            "posture_error_checks",
            "Checks that could not be judged in the latest posture snapshot",
            self.posture_errors.clone(),
        );
        registry.register(
            "enrollments",
            "Certificate requests to the collector (collector.enrollment), by outcome",
            self.enrollments.clone(),
        );
        registry.register(
            "imds_node_guard_interfaces",
            "Node interfaces the node-side IMDS guard (packet sockets) is attached to",
            self.node_guard_interfaces.clone(),
        );
        registry.register(
            "imds_node_guard_failing",
            "1 while the node-side IMDS guard cannot run (see the agent's log), else 0",
            self.node_guard_failing.clone(),
        );
        registry.register(
            "imds_packet_guards",
            "Pods (cgroups) with their own IMDS packet hook, attached when they opened a raw, ICMP or UDP-Lite socket",
            self.packet_guards.clone(),
        );
        registry.register_collector(Box::new(SpoolCollector(outbox)));
        registry
    }
}

/// Reads the outbox's size and drop counter at scrape time.
struct SpoolCollector(Outbox);

impl std::fmt::Debug for SpoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolCollector").finish_non_exhaustive()
    }
}

impl Collector for SpoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A storage error leaves the gauges out of this scrape rather than failing it.
        let (Ok(bytes), Ok(pending), Ok(dropped)) =
            (self.0.bytes(), self.0.pending(), self.0.dropped_total())
        else {
            return Ok(());
        };
        let gauges = [
            (
                "spool_bytes",
                "Bytes of findings waiting in the outbox",
                bytes,
            ),
            ("spool_findings", "Findings waiting in the outbox", pending),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let counter = ConstCounter::new(dropped);
        let metric = encoder.encode_descriptor(
            "spool_dropped",
            "Findings dropped, oldest first, because the outbox reached spoolMaxBytes",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use nodeward_proto::model::Severity;

    use super::*;

    #[test]
    fn the_registry_has_every_family_and_reads_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), u64::MAX).unwrap();
        let finding = Finding::new("imds-access", Severity::High, "x", Timestamp::now());
        outbox.append(finding.clone(), None).unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.finding(&finding);
        metrics.lost("exec", 3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry(outbox)).unwrap();
        for line in [
            "nodeward_findings_total{rule=\"imds-access\",severity=\"high\"} 1",
            "nodeward_events_lost_total{source=\"exec\"} 3",
            "nodeward_spool_findings 1",
            "nodeward_spool_dropped_total 0",
            "nodeward_reconnects_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
