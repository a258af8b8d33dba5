//! Nothing is lost between an agent and the SOC, with real processes: the collector is
//! killed (SIGKILL) while an agent reports and comes back later; the agent is killed and
//! restarted from its spool; a SOC subscriber reconnects from its cursor; an overflowing
//! spool is counted and reported. Findings are IMDS attempts to distinct ports, each its
//! own finding, so every one can be accounted for.

mod common;

use std::{collections::BTreeSet, process::Command, time::Duration};

use common::{Stack, wait_enforced};
use nodeward_testkit::{
    IMDS_V4, PodSpec, SimNode, SimPod, require_root,
    stack::{AgentProcess, TailProcess},
    wait_until, workspace_bin,
};
use serde_json::Value;

/// Time for a batch of findings to be stored once the collector is up.
const STORED_DEADLINE: Duration = Duration::from_mins(1);

/// `count` connects to IMDS from `pod`, to ports `from..from+count`: one finding each.
fn attempts(pod: &SimPod, from: u16, count: u16) {
    let result = pod.probe(&[
        "connect-range",
        "--addr",
        &IMDS_V4.to_string(),
        "--from",
        &from.to_string(),
        "--count",
        &count.to_string(),
    ]);
    assert!(result.ok, "{result:?}");
}

/// Waits until the agent has handled `total` IMDS events since it started, so that what
/// it made of them is in its spool.
fn wait_handled(agent: &mut AgentProcess, total: u64) {
    wait_until(STORED_DEADLINE, "the agent to handle every attempt", || {
        let handled = agent.metric(r#"nodeward_events_total{source="imds"}"#)?;
        #[expect(clippy::cast_precision_loss, reason = "small counts")]
        (handled >= total as f64).then_some(())
    });
}

/// Every stored finding, in id order, as `nodeward-collector findings` lists them.
fn stored(endpoint: &str) -> Vec<Value> {
    let out = Command::new(workspace_bin("nodeward-collector"))
        .args(["findings", "--format", "json", "--endpoint", endpoint])
        .output()
        .expect("running nodeward-collector findings");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The IMDS ports of the stored attempt findings (not port 80, which tells when
/// enforcement is on).
fn ports(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r["finding"]["ruleId"] == "imds-access")
        .filter_map(|r| r["finding"]["destination"]["port"].as_u64())
        .filter(|port| *port >= 1000)
        .collect()
}

/// Waits until the collector stores `expected` IMDS ports; returns everything stored.
fn wait_stored(endpoint: &str, expected: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let found = wait_until(STORED_DEADLINE, "every finding stored", || {
        last = stored(endpoint);
        (ports(&last).len() >= expected).then(|| last.clone())
    });
    // A moment more: a duplicate would show now.
    std::thread::sleep(Duration::from_millis(500));
    let again = stored(endpoint);
    assert_eq!(
        ports(&again).len(),
        ports(&found).len(),
        "findings kept arriving"
    );
    again
}

/// Each finding once, in the agent's order: per stream, sequence numbers strictly
/// increase with the storage id.
fn assert_exactly_once_in_order(records: &[Value], expected_ports: &BTreeSet<u64>) {
    let ports = ports(records);
    let unique: BTreeSet<u64> = ports.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ports.len(),
        "a finding was stored twice: {ports:?}"
    );
    assert_eq!(
        &unique, expected_ports,
        "stored ports differ from the attempts"
    );
    let seqs: Vec<u64> = records
        .iter()
        .filter(|r| r["bootId"] != "collector")
        .filter_map(|r| r["finding"]["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "stored out of the agent's order: {seqs:?}"
    );
}

#[test]
fn collector_and_agent_crashes_lose_nothing_and_store_nothing_twice() {
    if !require_root("collector_and_agent_crashes_lose_nothing_and_store_nothing_twice") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let mut stack = Stack::start(node, |s| s);
    let web = stack.node.pod("web");
    let endpoint = stack.collector.endpoint();
    wait_enforced(&web);

    attempts(&web, 1000, 100);
    let records = wait_stored(&endpoint, 100);
    // The SOC subscriber saw them live.
    let last_seen = stack
        .tail
        .wait_for(STORED_DEADLINE, "the 100th attempt", |v| {
            v["finding"]["destination"]["port"] == 1099
        });

    // The collector dies mid-stream; the agent keeps making findings.
    stack.collector.daemon().kill();
    let handled = stack
        .agent
        .metric(r#"nodeward_events_total{source="imds"}"#)
        .unwrap_or_default();
    attempts(&web, 2000, 100);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a count"
    )]
    wait_handled(&mut stack.agent, handled as u64 + 100);
    // The agent dies too, with findings only in its spool, and comes back.
    stack.agent.kill();
    stack.agent.restart();
    stack.agent.wait_active();
    attempts(&web, 3000, 100);
    stack.collector.restart();

    let records_after = wait_stored(&endpoint, 300);
    let expected: BTreeSet<u64> = (1000..1100).chain(2000..2100).chain(3000..3100).collect();
    assert_exactly_once_in_order(&records_after, &expected);
    assert!(records_after.len() >= records.len());

    // A SOC subscriber that lost its connection resumes from the last id it saw and gets
    // exactly what it missed.
    let cursor = last_seen["id"].as_u64().expect("records carry ids");
    let mut resumed = TailProcess::start(
        &endpoint,
        Some(cursor),
        &stack.node.scratch_dir().join("tail-resumed.log"),
    );
    let missed: Vec<u64> = records_after
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .filter(|id| *id > cursor)
        .collect();
    let last = *missed.last().expect("findings after the cursor");
    resumed.wait_for(STORED_DEADLINE, "the last stored finding", |v| {
        v["id"] == last
    });
    let got: Vec<u64> = resumed
        .seen()
        .iter()
        .filter_map(|v| v["id"].as_u64())
        .filter(|id| *id <= last)
        .collect();
    assert_eq!(got, missed, "the resumed feed has gaps or duplicates");
}

const ATTEMPTS: u16 = 1500;

#[test]
fn an_overflowing_spool_drops_the_oldest_and_reports_exactly_how_many() {
    if !require_root("an_overflowing_spool_drops_the_oldest_and_reports_exactly_how_many") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    // The smallest spool the agent accepts: a few hundred findings.
    let mut stack = Stack::start(node, |s| s.spool_max_bytes(64 * 1024));
    let web = stack.node.pod("web");
    let endpoint = stack.collector.endpoint();
    wait_enforced(&web);
    attempts(&web, 1000, 1);
    wait_stored(&endpoint, 1);

    stack.collector.daemon().kill();
    let handled = stack
        .agent
        .metric(r#"nodeward_events_total{source="imds"}"#)
        .unwrap_or_default();
    attempts(&web, 10_000, ATTEMPTS);
    // Every attempt is a finding in the bounded spool (or dropped from it) before the
    // collector returns.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a count"
    )]
    wait_handled(&mut stack.agent, handled as u64 + u64::from(ATTEMPTS));
    stack.collector.restart();

    // The report comes after what was kept (it is made once the collector acknowledges).
    let records = wait_until(STORED_DEADLINE, "spool-overflow stored", || {
        let records = stored(&endpoint);
        records
            .iter()
            .any(|r| r["finding"]["ruleId"] == "spool-overflow")
            .then_some(records)
    });
    let overflow: Vec<&Value> = records
        .iter()
        .filter(|r| r["finding"]["ruleId"] == "spool-overflow")
        .collect();
    assert_eq!(overflow.len(), 1, "reported once: {overflow:?}");
    let dropped = overflow[0]["finding"]["count"].as_u64().expect("a count");
    assert!(dropped > 0, "{}", overflow[0]);
    assert_eq!(overflow[0]["finding"]["category"], "health");
    let kept: BTreeSet<u64> = ports(&records)
        .into_iter()
        .filter(|p| *p >= 10_000)
        .collect();
    // Every attempt is accounted for: stored, or counted as dropped.
    assert_eq!(
        kept.len() as u64 + dropped,
        u64::from(ATTEMPTS),
        "kept {} + dropped {dropped}",
        kept.len()
    );
    // The oldest were dropped: what is kept is the newest, without holes.
    let first_kept = *kept.first().expect("some kept");
    let expected: BTreeSet<u64> = (first_kept..10_000 + u64::from(ATTEMPTS)).collect();
    assert_eq!(kept, expected, "the kept findings are not the newest run");
}
