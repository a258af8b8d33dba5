use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn sample() -> model::Finding {
    model::Finding {
        seq: 7,
        time: Timestamp::new(1_790_000_000, 123_456_789).unwrap(),
        rule_id: "imds-access".into(),
        severity: model::Severity::High,
        summary: "pod tried to reach the instance metadata service".into(),
        pod: Some(model::Pod {
            uid: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            ..Default::default()
        }),
        container: Some(model::Container {
            id: "ab".repeat(32),
            name: "web".into(),
            image: "registry.example/web:1.2".into(),
        }),
        process: Some(model::Process {
            pid: 42,
            uid: 0,
            comm: "curl".into(),
            cgroup_id: 9,
            binary: "/usr/bin/curl".into(),
            args: vec!["curl".into(), "-s".into(), "http://169.254.169.254/".into()],
            ppid: 41,
            tty: true,
            ..Default::default()
        }),
        destination: Some(model::Destination {
            address: IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
            port: 80,
            protocol: model::Protocol::Tcp,
        }),
        verdict: Some(model::Verdict::Blocked),
        count: 7,
        first_seen: Some(Timestamp::new(1_790_000_000, 0).unwrap()),
        last_seen: Some(Timestamp::new(1_790_000_050, 0).unwrap()),
        category: model::Category::Enforcement,
        techniques: vec!["T1552.005".into()],
        parent: Some(model::Process {
            pid: 41,
            comm: "sh".into(),
            ..Default::default()
        }),
        description: "details".into(),
    }
}

#[test]
fn zero_count_on_the_wire_means_one() {
    let mut wire = v1::Finding::from(sample());
    wire.count = 0;
    assert_eq!(model::Finding::try_from(wire).unwrap().count, 1);
}

#[test]
fn finding_survives_the_wire() {
    let finding = sample();
    let back = model::Finding::try_from(v1::Finding::from(finding.clone())).unwrap();
    assert_eq!(back, finding);
}

#[test]
fn unspecified_severity_is_refused() {
    let mut wire = v1::Finding::from(sample());
    wire.severity = 0;
    let err = model::Finding::try_from(wire).unwrap_err();
    assert!(err.to_string().contains("severity"), "{err}");
}

#[test]
fn missing_time_and_rule_are_refused() {
    let mut wire = v1::Finding::from(sample());
    wire.time = None;
    assert!(matches!(
        model::Finding::try_from(wire),
        Err(ConvertError::Missing("time"))
    ));
    let mut wire = v1::Finding::from(sample());
    wire.rule_id.clear();
    assert!(matches!(
        model::Finding::try_from(wire),
        Err(ConvertError::Missing("rule_id"))
    ));
}

#[test]
fn bad_address_and_port_are_refused() {
    let mut wire = v1::Finding::from(sample());
    wire.destination.as_mut().unwrap().address = "169.254.169.999".into();
    assert!(matches!(
        model::Finding::try_from(wire),
        Err(ConvertError::BadAddress(_))
    ));
    let mut wire = v1::Finding::from(sample());
    wire.destination.as_mut().unwrap().port = 70_000;
    assert!(matches!(
        model::Finding::try_from(wire),
        Err(ConvertError::OutOfRange { .. })
    ));
}

#[test]
fn json_uses_camel_case_and_lowercase_enums() {
    let json = serde_json::to_value(sample()).unwrap();
    assert_eq!(json["ruleId"], "imds-access");
    assert_eq!(json["severity"], "high");
    assert_eq!(json["verdict"], "blocked");
    assert_eq!(json["destination"]["address"], "169.254.169.254");
    assert_eq!(json["destination"]["protocol"], "tcp");
    assert_eq!(json["time"], "2026-09-21T14:13:20.123456789Z");
}

proptest! {
    #[test]
    fn destinations_round_trip(v6 in any::<[u8; 16]>(), port in any::<u16>(), proto in any::<u8>(), is_v4 in any::<bool>()) {
        let address = if is_v4 {
            IpAddr::V4(Ipv4Addr::new(v6[0], v6[1], v6[2], v6[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(v6))
        };
        let dst = model::Destination { address, port, protocol: model::Protocol::from_ip_protocol(proto) };
        let back = model::Destination::try_from(v1::NetworkDestination::from(dst.clone())).unwrap();
        prop_assert_eq!(back, dst);
    }

    #[test]
    fn arbitrary_wire_findings_never_panic(seq in any::<u64>(), sev in any::<i32>(), verdict in any::<i32>(), secs in any::<i64>(), nanos in any::<i32>(), rule in ".{0,8}") {
        let wire = v1::Finding {
            seq,
            time: Some(prost_types::Timestamp { seconds: secs, nanos }),
            rule_id: rule,
            severity: sev,
            verdict,
            ..Default::default()
        };
        let _ = model::Finding::try_from(wire);
    }
}

fn posture_sample() -> model::PostureSnapshot {
    model::PostureSnapshot {
        generation: 3,
        time: Timestamp::new(1_790_000_000, 0).unwrap(),
        imds_mode: "enforce".into(),
        checks: vec![model::PostureCheck {
            id: "kubelet-anonymous-auth".into(),
            title: "Anonymous requests to the kubelet are refused".into(),
            benchmarks: vec!["cis-eks-1.8.0:3.2.1".into(), "cis-1.12:4.2.1".into()],
            status: model::CheckStatus::Fail,
            observed: "true".into(),
            expected: "false".into(),
            source: "default".into(),
            remediation: "set authentication.anonymous.enabled: false".into(),
        }],
        scan_error: None,
        policy_generation: Some("7".into()),
    }
}

#[test]
fn posture_snapshots_survive_the_wire() {
    let wire = v1::PostureSnapshot::from(posture_sample());
    assert_eq!(
        model::PostureSnapshot::try_from(wire).unwrap(),
        posture_sample()
    );
}

#[test]
fn a_check_without_a_status_is_refused() {
    let mut wire = v1::PostureSnapshot::from(posture_sample());
    wire.checks[0].status = 0;
    let err = model::PostureSnapshot::try_from(wire.clone()).unwrap_err();
    assert!(err.to_string().contains("checks.status"), "{err}");
    wire.checks[0].status = 99;
    assert!(model::PostureSnapshot::try_from(wire).is_err());
}

#[test]
fn filters_survive_the_wire_and_match_every_part() {
    let filter = model::FindingFilter {
        min_severity: Some(model::Severity::High),
        categories: vec![model::Category::Enforcement],
        rule_ids: vec!["imds-access".into()],
        nodes: vec!["node-a".into()],
        namespaces: vec![String::new()],
    };
    let wire = v1::FindingFilter::from(filter.clone());
    assert_eq!(model::FindingFilter::try_from(wire).unwrap(), filter);

    let mut record = model::FindingRecord {
        id: 1,
        node_name: "node-a".into(),
        boot_id: "b".into(),
        received_time: Timestamp::new(1_790_000_000, 0).unwrap(),
        finding: sample(),
    };
    record.finding.category = model::Category::Enforcement;
    assert!(
        filter.matches(&record),
        "the sample pod has an empty namespace"
    );
    let mut other = record.clone();
    other.node_name = "node-b".into();
    assert!(!filter.matches(&other));
    let mut low = record.clone();
    low.finding.severity = model::Severity::Medium;
    assert!(!filter.matches(&low));
    let mut no_pod = record.clone();
    no_pod.finding.pod = None;
    assert!(!filter.matches(&no_pod), "no pod never matches a namespace");
    assert!(model::FindingFilter::default().matches(&no_pod));
}

/// What the collector does with a message off an agent's stream, and what a SOC client
/// does with a record: decode, convert; what converted goes back to the wire unchanged.
/// Never a panic (the cargo-fuzz targets in `proto/fuzz` run the same on a fuzzer).
fn decode_and_convert(bytes: &[u8]) {
    use prost::Message as _;
    fn round_trip<W, M>(wire: W)
    where
        M: TryFrom<W> + Clone + PartialEq + std::fmt::Debug,
        W: From<M>,
        <M as TryFrom<W>>::Error: std::fmt::Debug,
    {
        if let Ok(domain) = M::try_from(wire) {
            let again = M::try_from(W::from(domain.clone())).expect("converts again");
            assert_eq!(again, domain);
        }
    }
    if let Ok(request) = v1::ReportRequest::decode(bytes) {
        match request.kind {
            Some(v1::report_request::Kind::Findings(batch)) => {
                for finding in batch.findings {
                    round_trip::<_, model::Finding>(finding);
                }
            }
            Some(v1::report_request::Kind::Posture(snapshot)) => {
                round_trip::<_, model::PostureSnapshot>(snapshot);
            }
            Some(v1::report_request::Kind::Hello(_)) | None => {}
        }
    }
    if let Ok(record) = v1::FindingRecord::decode(bytes) {
        round_trip::<_, model::FindingRecord>(record);
    }
    if let Ok(request) = v1::SubscribeRequest::decode(bytes)
        && let Some(filter) = request.filter
    {
        round_trip::<_, model::FindingFilter>(filter);
    }
}

/// Valid messages to damage: a batch with the sample finding, and a posture snapshot.
fn valid_reports() -> [Vec<u8>; 2] {
    use prost::Message as _;
    let findings = v1::ReportRequest {
        kind: Some(v1::report_request::Kind::Findings(v1::FindingBatch {
            findings: vec![sample().into(), sample().into()],
        })),
    };
    let posture = v1::ReportRequest {
        kind: Some(v1::report_request::Kind::Posture(posture_sample().into())),
    };
    [findings.encode_to_vec(), posture.encode_to_vec()]
}

#[test]
fn valid_reports_convert_and_round_trip() {
    for bytes in valid_reports() {
        decode_and_convert(&bytes);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_decode_and_convert_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        decode_and_convert(&bytes);
    }

    #[test]
    fn damaged_reports_decode_and_convert_without_panicking(
        which in 0..2usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = valid_reports()[which].clone();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        decode_and_convert(&bytes);
    }
}
