//! The fleet and SOC views over a real loopback socket: posture, nodes, filters, paging,
//! silent nodes, metrics and readiness.

use std::{net::SocketAddr, time::Duration};

use jiff::Timestamp;
use nodeward_proto::{
    model::{self, Category, CheckStatus, Severity},
    v1::{
        self, FindingFilter, GetFleetPostureRequest, GetNodePostureRequest, ListFindingsRequest,
        ListNodesRequest, ReportRequest, ReportResponse, SubscribeRequest, report_request,
        report_response,
    },
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::{Code, Streaming};

use super::tests::{Running, batch, hello, next_ack, next_record, report};

const DEADLINE: Duration = Duration::from_secs(10);

fn check(id: &str, status: CheckStatus) -> model::PostureCheck {
    model::PostureCheck {
        id: id.into(),
        title: format!("title of {id}"),
        benchmarks: vec![format!("cis-eks-1.8.0:{id}")],
        status,
        observed: "observed".into(),
        expected: "expected".into(),
        source: "default".into(),
        remediation: "fix it".into(),
    }
}

fn posture(generation: u64, checks: Vec<model::PostureCheck>) -> ReportRequest {
    ReportRequest {
        kind: Some(report_request::Kind::Posture(
            model::PostureSnapshot {
                generation,
                time: Timestamp::now(),
                imds_mode: "enforce".into(),
                checks,
                scan_error: None,
                policy_generation: None,
            }
            .into(),
        )),
    }
}

async fn next_posture_ack(responses: &mut Streaming<ReportResponse>) -> u64 {
    let response = tokio::time::timeout(DEADLINE, responses.message())
        .await
        .expect("a response in time")
        .unwrap()
        .unwrap();
    match response.kind {
        Some(report_response::Kind::PostureAck(ack)) => ack.generation,
        other => panic!("expected a posture ack, got {other:?}"),
    }
}

/// A finding with a rule, severity and (optionally) a pod namespace.
fn finding(seq: u64, rule: &str, severity: Severity, namespace: Option<&str>) -> v1::Finding {
    model::Finding {
        seq,
        pod: namespace.map(|ns| model::Pod {
            uid: format!("uid-{seq}"),
            namespace: ns.into(),
            ..model::Pod::default()
        }),
        ..model::Finding::new(rule, severity, format!("finding {seq}"), Timestamp::now())
    }
    .into()
}

fn seqs(records: &[v1::FindingRecord]) -> Vec<(String, u64)> {
    records
        .iter()
        .map(|r| (r.node_name.clone(), r.finding.as_ref().unwrap().seq))
        .collect()
}

#[tokio::test]
async fn posture_is_stored_acked_and_an_older_generation_ignored() {
    let collector = Running::start().await;
    let (tx, mut responses) = report(&collector.channel, hello("node-a")).await.unwrap();
    tx.send(posture(2, vec![check("a", CheckStatus::Fail)]))
        .await
        .unwrap();
    assert_eq!(next_posture_ack(&mut responses).await, 2);
    // A resend of an older snapshot from the same outbox is acknowledged, not stored.
    tx.send(posture(1, vec![check("a", CheckStatus::Pass)]))
        .await
        .unwrap();
    assert_eq!(next_posture_ack(&mut responses).await, 1);
    // Findings and posture share the stream.
    tx.send(batch(vec![super::tests::finding(1)]))
        .await
        .unwrap();
    assert_eq!(next_ack(&mut responses).await, 1);

    let stored = collector
        .soc()
        .get_node_posture(GetNodePostureRequest {
            node_name: "node-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = model::PostureSnapshot::try_from(stored.snapshot.unwrap()).unwrap();
    assert_eq!(snapshot.generation, 2);
    assert_eq!(snapshot.checks[0].status, CheckStatus::Fail);
    assert!(stored.received_time.is_some());

    let err = collector
        .soc()
        .get_node_posture(GetNodePostureRequest {
            node_name: "node-z".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("node-z"), "{}", err.message());

    // Generation 0 means "unset" on the wire.
    tx.send(posture(0, Vec::new())).await.unwrap();
    let status = tokio::time::timeout(DEADLINE, responses.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("generation"), "{status}");
    drop(tx);
    collector.stop().await;
}

#[tokio::test]
async fn nodes_and_fleet_posture_with_two_nodes() {
    let collector = Running::start().await;
    let (tx_a, mut a) = report(&collector.channel, hello("node-a")).await.unwrap();
    tx_a.send(posture(
        1,
        vec![
            check("anonymous-auth", CheckStatus::Fail),
            check("read-only-port", CheckStatus::Pass),
        ],
    ))
    .await
    .unwrap();
    next_posture_ack(&mut a).await;
    let (tx_b, mut b) = report(&collector.channel, hello("node-b")).await.unwrap();
    tx_b.send(posture(
        1,
        vec![
            check("anonymous-auth", CheckStatus::Pass),
            check("read-only-port", CheckStatus::Warn),
            check("kubeconfig-mode", CheckStatus::Fail),
        ],
    ))
    .await
    .unwrap();
    next_posture_ack(&mut b).await;
    // A node that said hello but sent no posture yet.
    let (tx_c, _c) = report(&collector.channel, hello("node-c")).await.unwrap();

    let nodes = collector
        .soc()
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let names: Vec<&str> = nodes.iter().map(|n| n.node_name.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"]);
    assert_eq!(nodes[0].cluster, "test");
    assert_eq!(nodes[0].imds_mode, "enforce");
    assert_eq!(nodes[0].failing_checks, ["anonymous-auth"]);
    assert_eq!(nodes[1].failing_checks, ["kubeconfig-mode"]);
    assert!(nodes.iter().all(|n| !n.silent && n.last_seen.is_some()));
    assert!(nodes[2].imds_mode.is_empty() && nodes[2].posture_time.is_none());

    let fleet = collector
        .soc()
        .get_fleet_posture(GetFleetPostureRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fleet.nodes, 2, "only nodes with a snapshot");
    let by_id = |id: &str| fleet.checks.iter().find(|c| c.id == id).unwrap();
    let anonymous = by_id("anonymous-auth");
    assert_eq!(
        (anonymous.passing, anonymous.failing, anonymous.other),
        (1, 1, 0)
    );
    assert_eq!(anonymous.failing_nodes, ["node-a"]);
    assert_eq!(anonymous.title, "title of anonymous-auth");
    assert_eq!(anonymous.benchmarks, ["cis-eks-1.8.0:anonymous-auth"]);
    let port = by_id("read-only-port");
    assert_eq!((port.passing, port.failing, port.other), (1, 0, 1));
    let mode = by_id("kubeconfig-mode");
    assert_eq!(
        (mode.passing, mode.failing, mode.failing_nodes.len()),
        (0, 1, 1)
    );
    drop((tx_a, tx_b, tx_c));
    collector.stop().await;
}

/// node-a and node-b each report 1..=n with alternating rules, severities and namespaces.
async fn store_mixed(collector: &Running, nodes: &[&str], from: u64, to: u64) {
    for node in nodes {
        let (tx, mut acks) = report(&collector.channel, hello(node)).await.unwrap();
        let findings = (from..=to)
            .map(|seq| {
                let (rule, severity) = if seq % 2 == 0 {
                    ("imds-access", Severity::High)
                } else {
                    ("shell-in-container", Severity::Medium)
                };
                let namespace = if seq % 3 == 0 {
                    Some("prod")
                } else {
                    Some("dev")
                };
                finding(seq, rule, severity, namespace)
            })
            .collect();
        tx.send(batch(findings)).await.unwrap();
        assert_eq!(next_ack(&mut acks).await, to);
    }
}

#[tokio::test]
async fn subscribe_filters_the_replay_and_the_live_feed() {
    let collector = Running::start().await;
    store_mixed(&collector, &["node-a", "node-b"], 1, 6).await;
    let filter = FindingFilter {
        min_severity: v1::Severity::High.into(),
        nodes: vec!["node-b".into()],
        ..FindingFilter::default()
    };
    let mut feed = collector
        .soc()
        .subscribe(SubscribeRequest {
            after_id: Some(0),
            filter: Some(filter.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_record(&mut feed).await);
    }
    assert_eq!(
        seqs(&seen),
        [
            ("node-b".into(), 2),
            ("node-b".into(), 4),
            ("node-b".into(), 6)
        ]
    );
    // Live: only node-b's high findings come through.
    store_mixed(&collector, &["node-a", "node-b"], 7, 10).await;
    let live = [next_record(&mut feed).await, next_record(&mut feed).await];
    assert_eq!(seqs(&live), [("node-b".into(), 8), ("node-b".into(), 10)]);
    drop(feed);

    // Resuming after the first live record with the same filter misses nothing.
    let mut resumed = collector
        .soc()
        .subscribe(SubscribeRequest {
            after_id: Some(live[0].id),
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_record(&mut resumed).await.id, live[1].id);

    // Namespace filtering happens after decoding, on both parts too.
    let mut prod = collector
        .soc()
        .subscribe(SubscribeRequest {
            after_id: Some(0),
            filter: Some(FindingFilter {
                namespaces: vec!["prod".into()],
                nodes: vec!["node-a".into()],
                ..FindingFilter::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_record(&mut prod).await);
    }
    assert_eq!(
        seqs(&got),
        [
            ("node-a".into(), 3),
            ("node-a".into(), 6),
            ("node-a".into(), 9)
        ]
    );

    let err = collector
        .soc()
        .subscribe(SubscribeRequest {
            after_id: None,
            filter: Some(FindingFilter {
                min_severity: 42,
                ..FindingFilter::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("min_severity"), "{}", err.message());
    collector.stop().await;
}

#[tokio::test]
async fn list_findings_pages_without_gaps_or_duplicates() {
    let collector = Running::start().await;
    store_mixed(&collector, &["node-a", "node-b"], 1, 30).await;
    let all = collector
        .soc()
        .list_findings(ListFindingsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.findings.len(), 60, "the default page holds 100");
    assert_eq!(all.next_after_id, 0, "and it is the last");

    for (filter, expected) in [
        // SQL only.
        (
            FindingFilter {
                rule_ids: vec!["imds-access".into()],
                ..FindingFilter::default()
            },
            30,
        ),
        // Decoded: a category nothing has, then a namespace.
        (
            FindingFilter {
                categories: vec![v1::FindingCategory::Health.into()],
                ..FindingFilter::default()
            },
            0,
        ),
        (
            FindingFilter {
                namespaces: vec!["prod".into()],
                ..FindingFilter::default()
            },
            20,
        ),
    ] {
        let mut pages = Vec::new();
        let mut after = 0;
        loop {
            let page = collector
                .soc()
                .list_findings(ListFindingsRequest {
                    filter: Some(filter.clone()),
                    after_id: after,
                    page_size: 7,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.findings.len() <= 7);
            if page.next_after_id != 0 {
                assert_eq!(page.findings.len(), 7, "only the last page is short");
                assert_eq!(page.next_after_id, page.findings.last().unwrap().id);
            }
            pages.extend(page.findings);
            if page.next_after_id == 0 {
                break;
            }
            after = page.next_after_id;
        }
        let ids: Vec<u64> = pages.iter().map(|r| r.id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "no duplicates: {ids:?}"
        );
        let matching: Vec<u64> = all
            .findings
            .iter()
            .filter(|r| {
                nodeward_proto::model::FindingFilter::try_from(filter.clone())
                    .unwrap()
                    .matches(&model::FindingRecord::try_from((*r).clone()).unwrap())
            })
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, matching, "no gaps");
        assert_eq!(ids.len(), expected);
    }
    collector.stop().await;
}

#[tokio::test]
async fn a_silent_node_is_reported_once_and_its_return_too() {
    let collector = Running::start_with(|c| c.silence_after(Duration::from_secs(1))).await;
    let mut health = collector
        .soc()
        .subscribe(SubscribeRequest {
            after_id: Some(0),
            filter: Some(FindingFilter {
                categories: vec![v1::FindingCategory::Health.into()],
                ..FindingFilter::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let (tx, mut acks) = report(&collector.channel, hello("node-a")).await.unwrap();
    tx.send(batch(vec![super::tests::finding(1)]))
        .await
        .unwrap();
    next_ack(&mut acks).await;
    drop((tx, acks));

    let silent = next_record(&mut health).await;
    let finding = model::Finding::try_from(silent.finding.clone().unwrap()).unwrap();
    assert_eq!(
        (finding.rule_id.as_str(), finding.severity, finding.category),
        ("node-silent", Severity::High, Category::Health)
    );
    assert!(finding.summary.contains("node-a"), "{}", finding.summary);
    assert_eq!(
        (silent.node_name.as_str(), silent.boot_id.as_str()),
        ("node-a", "collector")
    );
    let nodes = collector
        .soc()
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(nodes[0].silent);

    // Several silence checks later, still raised only once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (tx, _acks) = report(&collector.channel, hello("node-a")).await.unwrap();
    let back = next_record(&mut health).await;
    let finding = model::Finding::try_from(back.finding.clone().unwrap()).unwrap();
    assert_eq!(
        (finding.rule_id.as_str(), finding.severity),
        ("node-back", Severity::Info)
    );
    assert!(back.id > silent.id);
    let stored = collector
        .soc()
        .list_findings(ListFindingsRequest {
            filter: Some(FindingFilter {
                rule_ids: vec!["node-silent".into(), "node-back".into()],
                ..FindingFilter::default()
            }),
            ..ListFindingsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert_eq!(
        stored.iter().map(|r| r.id).collect::<Vec<_>>(),
        [silent.id, back.id],
        "each stored once"
    );
    // Connected, even idle, is reporting: no new silence while the stream is open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let nodes = collector
        .soc()
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(!nodes[0].silent, "an open stream keeps the node reporting");
    drop(tx);
    collector.stop().await;
}

/// One HTTP/1.1 GET; returns the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn metrics_name_every_family_and_readiness_is_reported() {
    let collector = Running::start().await;
    assert_eq!(get(collector.http, "/healthz").await.0, 200);
    assert_eq!(get(collector.http, "/readyz").await.0, 200);
    let (tx, mut responses) = report(&collector.channel, hello("node-a")).await.unwrap();
    tx.send(batch(vec![super::tests::finding(1)]))
        .await
        .unwrap();
    next_ack(&mut responses).await;
    tx.send(posture(1, vec![check("anonymous-auth", CheckStatus::Fail)]))
        .await
        .unwrap();
    next_posture_ack(&mut responses).await;

    let expected = [
        "nodeward_findings_stored_total{rule=\"imds-access\",severity=\"high\"} 1",
        "nodeward_acks_sent_total{kind=\"findings\"} 1",
        "nodeward_acks_sent_total{kind=\"posture\"} 1",
        "nodeward_streams_open{kind=\"agent\"} 1",
        "nodeward_nodes_reporting 1",
        "nodeward_nodes_silent 0",
        "nodeward_posture_failures{check=\"anonymous-auth\"} 1",
    ];
    // The fleet gauges are recomputed shortly after posture arrives.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = get(collector.http, "/metrics").await;
        assert_eq!(status, 200);
        if expected.iter().all(|line| body.contains(line)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {:?} in\n{body}",
            expected.iter().find(|l| !body.contains(*l))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(tx);
    collector.stop().await;
}
