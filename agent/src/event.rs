//! What modules deliver to the finding pipeline.

use nodeward_common::imds::ImdsEvent;
use nodeward_proto::model::Finding;

use crate::{egress::EgressInfo, exec::ExecInfo};

#[derive(Debug, Clone)]
pub enum Event {
    /// Attempts to reach a blocked IMDS address: a kernel report (or, with `hook` set to
    /// `HOOK_NONE`, counted attempts no report carried), standing for `count` attempts.
    Imds { event: ImdsEvent, count: u64 },
    /// An exec in a watched process.
    Exec(Box<ExecInfo>),
    /// A container reached a destination (new, or again after the window).
    Egress(EgressInfo),
    /// The cumulative number of reports a module's kernel side could not deliver (ring
    /// buffer full); the pipeline reports growth past what it already reported.
    Lost { source: &'static str, total: u64 },
    /// A module's own state the SOC must know of (it cannot do part of its job).
    Health(Box<Finding>),
}

impl Event {
    /// The sensor an event comes from, for metrics.
    pub fn source(&self) -> &'static str {
        match self {
            Self::Imds { .. } => "imds",
            Self::Exec(_) => "exec",
            Self::Egress(_) => "egress",
            Self::Lost { source, .. } => source,
            Self::Health(_) => "health",
        }
    }
}
