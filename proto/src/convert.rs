//! Wire ↔ domain conversions, all in one place. Domain → wire cannot fail; wire → domain
//! validates, so a malformed message from a peer is refused with a reason instead of
//! being stored half-understood.

use std::net::IpAddr;

use jiff::Timestamp;

use crate::{model, v1};

/// A wire message that does not describe a valid domain value.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` has an unknown or unspecified value {value}")]
    BadEnum { field: &'static str, value: i32 },
    #[error("field `{field}` is not a valid timestamp")]
    BadTime {
        field: &'static str,
        #[source]
        source: jiff::Error,
    },
    #[error("field `destination.address` is not an IP address: {0:?}")]
    BadAddress(String),
    #[error("field `{field}` is out of range: {value}")]
    OutOfRange { field: &'static str, value: u64 },
}

type Result<T> = std::result::Result<T, ConvertError>;

fn timestamp(field: &'static str, ts: Option<prost_types::Timestamp>) -> Result<Timestamp> {
    let ts = ts.ok_or(ConvertError::Missing(field))?;
    Timestamp::new(ts.seconds, ts.nanos).map_err(|source| ConvertError::BadTime { field, source })
}

fn wire_timestamp(ts: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.as_second(),
        nanos: ts.subsec_nanosecond(),
    }
}

/// Both directions between a wire enum and its domain twin, variant for variant; the wire's
/// `Unspecified` is refused, naming `field`.
macro_rules! enum_pair {
    ($wire:ident, $model:ident, $field:literal, { $($variant:ident),+ $(,)? }) => {
        impl TryFrom<v1::$wire> for model::$model {
            type Error = ConvertError;
            fn try_from(value: v1::$wire) -> Result<Self> {
                match value {
                    $(v1::$wire::$variant => Ok(Self::$variant),)+
                    v1::$wire::Unspecified => Err(ConvertError::BadEnum {
                        field: $field,
                        value: 0,
                    }),
                }
            }
        }

        impl From<model::$model> for v1::$wire {
            fn from(value: model::$model) -> Self {
                match value {
                    $(model::$model::$variant => Self::$variant,)+
                }
            }
        }
    };
}

enum_pair!(Severity, Severity, "severity", { Info, Low, Medium, High, Critical });
enum_pair!(FindingCategory, Category, "category", { Enforcement, Runtime, Posture, Health });
enum_pair!(CheckStatus, CheckStatus, "checks.status", { Pass, Fail, Warn, Error });

fn verdict(value: i32) -> Result<Option<model::Verdict>> {
    match v1::Verdict::try_from(value) {
        Ok(v1::Verdict::Unspecified) => Ok(None),
        Ok(v1::Verdict::Blocked) => Ok(Some(model::Verdict::Blocked)),
        Ok(v1::Verdict::Audited) => Ok(Some(model::Verdict::Audited)),
        Ok(v1::Verdict::Allowed) => Ok(Some(model::Verdict::Allowed)),
        Err(_) => Err(ConvertError::BadEnum {
            field: "verdict",
            value,
        }),
    }
}

fn wire_verdict(value: Option<model::Verdict>) -> v1::Verdict {
    match value {
        None => v1::Verdict::Unspecified,
        Some(model::Verdict::Blocked) => v1::Verdict::Blocked,
        Some(model::Verdict::Audited) => v1::Verdict::Audited,
        Some(model::Verdict::Allowed) => v1::Verdict::Allowed,
    }
}

impl TryFrom<v1::NetworkDestination> for model::Destination {
    type Error = ConvertError;
    fn try_from(value: v1::NetworkDestination) -> Result<Self> {
        let address: IpAddr = value
            .address
            .parse()
            .map_err(|_| ConvertError::BadAddress(value.address.clone()))?;
        let port = u16::try_from(value.port).map_err(|_| ConvertError::OutOfRange {
            field: "destination.port",
            value: u64::from(value.port),
        })?;
        let ip_protocol =
            u8::try_from(value.ip_protocol).map_err(|_| ConvertError::OutOfRange {
                field: "destination.ip_protocol",
                value: u64::from(value.ip_protocol),
            })?;
        let protocol = match v1::Protocol::try_from(value.protocol) {
            Ok(v1::Protocol::Tcp) => model::Protocol::Tcp,
            Ok(v1::Protocol::Udp) => model::Protocol::Udp,
            Ok(v1::Protocol::Other) => model::Protocol::from_ip_protocol(ip_protocol),
            Ok(v1::Protocol::Unspecified) | Err(_) => {
                return Err(ConvertError::BadEnum {
                    field: "destination.protocol",
                    value: value.protocol,
                });
            }
        };
        Ok(Self {
            address,
            port,
            protocol,
        })
    }
}

impl From<model::Destination> for v1::NetworkDestination {
    fn from(value: model::Destination) -> Self {
        let protocol = match value.protocol {
            model::Protocol::Tcp => v1::Protocol::Tcp,
            model::Protocol::Udp => v1::Protocol::Udp,
            model::Protocol::Other(_) => v1::Protocol::Other,
        };
        Self {
            address: value.address.to_string(),
            port: u32::from(value.port),
            protocol: protocol.into(),
            ip_protocol: u32::from(value.protocol.ip_protocol()),
        }
    }
}

/// Moves the fields two structs share by name, in both directions.
macro_rules! same_fields {
    ($wire:ty, $domain:ty, { $($field:ident),* } $(, map { $($mapped:ident),* })?) => {
        impl From<$wire> for $domain {
            fn from(value: $wire) -> Self {
                Self { $($field: value.$field,)* $($($mapped: value.$mapped.into_iter().collect(),)*)? }
            }
        }
        impl From<$domain> for $wire {
            fn from(value: $domain) -> Self {
                Self { $($field: value.$field,)* $($($mapped: value.$mapped.into_iter().collect(),)*)? }
            }
        }
    };
}

same_fields!(v1::Pod, model::Pod, { uid, namespace, name, service_account, host_network, identity_pending, owner }, map { labels });
same_fields!(v1::Container, model::Container, { id, name, image });
same_fields!(v1::Process, model::Process, { pid, ppid, uid, gid, comm, cgroup_id, binary, args, tty, truncated });

impl TryFrom<v1::Finding> for model::Finding {
    type Error = ConvertError;
    fn try_from(value: v1::Finding) -> Result<Self> {
        if value.rule_id.is_empty() {
            return Err(ConvertError::Missing("rule_id"));
        }
        let severity = v1::Severity::try_from(value.severity)
            .map_err(|_| ConvertError::BadEnum {
                field: "severity",
                value: value.severity,
            })?
            .try_into()?;
        let category = v1::FindingCategory::try_from(value.category)
            .map_err(|_| ConvertError::BadEnum {
                field: "category",
                value: value.category,
            })?
            .try_into()?;
        Ok(Self {
            seq: value.seq,
            time: timestamp("time", value.time)?,
            rule_id: value.rule_id,
            severity,
            summary: value.summary,
            pod: value.pod.map(Into::into),
            container: value.container.map(Into::into),
            process: value.process.map(Into::into),
            destination: value.destination.map(TryInto::try_into).transpose()?,
            verdict: verdict(value.verdict)?,
            count: value.count.max(1),
            first_seen: value
                .first_seen
                .map(|t| timestamp("first_seen", Some(t)))
                .transpose()?,
            last_seen: value
                .last_seen
                .map(|t| timestamp("last_seen", Some(t)))
                .transpose()?,
            category,
            techniques: value.techniques,
            parent: value.parent.map(Into::into),
            description: value.description,
        })
    }
}

impl From<model::Finding> for v1::Finding {
    fn from(value: model::Finding) -> Self {
        Self {
            seq: value.seq,
            time: Some(wire_timestamp(value.time)),
            rule_id: value.rule_id,
            severity: v1::Severity::from(value.severity).into(),
            summary: value.summary,
            pod: value.pod.map(Into::into),
            container: value.container.map(Into::into),
            process: value.process.map(Into::into),
            destination: value.destination.map(Into::into),
            verdict: wire_verdict(value.verdict).into(),
            count: value.count,
            first_seen: value.first_seen.map(wire_timestamp),
            last_seen: value.last_seen.map(wire_timestamp),
            category: v1::FindingCategory::from(value.category).into(),
            techniques: value.techniques,
            parent: value.parent.map(Into::into),
            description: value.description,
        }
    }
}

impl TryFrom<v1::FindingRecord> for model::FindingRecord {
    type Error = ConvertError;
    fn try_from(value: v1::FindingRecord) -> Result<Self> {
        Ok(Self {
            id: value.id,
            node_name: value.node_name,
            boot_id: value.boot_id,
            received_time: timestamp("received_time", value.received_time)?,
            finding: value
                .finding
                .ok_or(ConvertError::Missing("finding"))?
                .try_into()?,
        })
    }
}

impl From<model::FindingRecord> for v1::FindingRecord {
    fn from(value: model::FindingRecord) -> Self {
        Self {
            id: value.id,
            node_name: value.node_name,
            boot_id: value.boot_id,
            received_time: Some(wire_timestamp(value.received_time)),
            finding: Some(value.finding.into()),
        }
    }
}

impl TryFrom<v1::PostureCheck> for model::PostureCheck {
    type Error = ConvertError;
    fn try_from(value: v1::PostureCheck) -> Result<Self> {
        if value.id.is_empty() {
            return Err(ConvertError::Missing("checks.id"));
        }
        let status =
            v1::CheckStatus::try_from(value.status).map_err(|_| ConvertError::BadEnum {
                field: "checks.status",
                value: value.status,
            })?;
        Ok(Self {
            status: status.try_into()?,
            id: value.id,
            title: value.title,
            benchmarks: value.benchmarks,
            observed: value.observed,
            expected: value.expected,
            source: value.source,
            remediation: value.remediation,
        })
    }
}

impl From<model::PostureCheck> for v1::PostureCheck {
    fn from(value: model::PostureCheck) -> Self {
        Self {
            status: v1::CheckStatus::from(value.status).into(),
            id: value.id,
            title: value.title,
            benchmarks: value.benchmarks,
            observed: value.observed,
            expected: value.expected,
            source: value.source,
            remediation: value.remediation,
        }
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

impl TryFrom<v1::PostureSnapshot> for model::PostureSnapshot {
    type Error = ConvertError;
    fn try_from(value: v1::PostureSnapshot) -> Result<Self> {
        if value.generation == 0 {
            return Err(ConvertError::Missing("posture.generation"));
        }
        Ok(Self {
            generation: value.generation,
            time: timestamp("posture.time", value.time)?,
            imds_mode: value.imds_mode,
            checks: value
                .checks
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
            scan_error: non_empty(value.scan_error),
            policy_generation: non_empty(value.policy_generation),
        })
    }
}

impl From<model::PostureSnapshot> for v1::PostureSnapshot {
    fn from(value: model::PostureSnapshot) -> Self {
        Self {
            generation: value.generation,
            time: Some(wire_timestamp(value.time)),
            imds_mode: value.imds_mode,
            checks: value.checks.into_iter().map(Into::into).collect(),
            scan_error: value.scan_error.unwrap_or_default(),
            policy_generation: value.policy_generation.unwrap_or_default(),
        }
    }
}

impl TryFrom<v1::FindingFilter> for model::FindingFilter {
    type Error = ConvertError;
    fn try_from(value: v1::FindingFilter) -> Result<Self> {
        let min_severity = match v1::Severity::try_from(value.min_severity) {
            Ok(v1::Severity::Unspecified) => None,
            Ok(severity) => Some(severity.try_into()?),
            Err(_) => {
                return Err(ConvertError::BadEnum {
                    field: "filter.min_severity",
                    value: value.min_severity,
                });
            }
        };
        let categories = value
            .categories
            .into_iter()
            .map(|c| {
                v1::FindingCategory::try_from(c)
                    .map_err(|_| ConvertError::BadEnum {
                        field: "filter.categories",
                        value: c,
                    })
                    .and_then(model::Category::try_from)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            min_severity,
            categories,
            rule_ids: value.rule_ids,
            nodes: value.nodes,
            namespaces: value.namespaces,
        })
    }
}

impl From<model::FindingFilter> for v1::FindingFilter {
    fn from(value: model::FindingFilter) -> Self {
        Self {
            min_severity: value
                .min_severity
                .map_or(v1::Severity::Unspecified, Into::into)
                .into(),
            categories: value
                .categories
                .into_iter()
                .map(|c| v1::FindingCategory::from(c).into())
                .collect(),
            rule_ids: value.rule_ids,
            nodes: value.nodes,
            namespaces: value.namespaces,
        }
    }
}

#[cfg(test)]
mod tests;
