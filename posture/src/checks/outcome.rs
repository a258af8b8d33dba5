//! A check's verdict before it is dressed with its definition.

use serde::{Deserialize, Serialize};

use crate::config::{Defaults, Source, Sourced};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The node does not meet the check: fix it.
    Fail,
    /// The check could not be judged (a file missing, unreadable or garbage): never a pass.
    Error,
    /// Needs a person: a manual item, or something the node cannot answer.
    Warn,
    /// The node meets the check.
    Pass,
}

impl Status {
    /// Lower case, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Pass => "pass",
        }
    }
}

/// What a check function returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub status: Status,
    pub observed: String,
    pub source: String,
}

impl Outcome {
    pub fn new(status: Status, observed: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            status,
            observed: observed.into(),
            source: source.into(),
        }
    }

    pub fn pass(observed: impl Into<String>, source: impl Into<String>) -> Self {
        Self::new(Status::Pass, observed, source)
    }

    pub fn fail(observed: impl Into<String>, source: impl Into<String>) -> Self {
        Self::new(Status::Fail, observed, source)
    }

    pub fn warn(observed: impl Into<String>, source: impl Into<String>) -> Self {
        Self::new(Status::Warn, observed, source)
    }

    pub fn error(observed: impl Into<String>, source: impl Into<String>) -> Self {
        Self::new(Status::Error, observed, source)
    }

    /// Pass or fail on a condition.
    pub fn judge(ok: bool, observed: impl Into<String>, source: impl Into<String>) -> Self {
        Self::new(
            if ok { Status::Pass } else { Status::Fail },
            observed,
            source,
        )
    }
}

/// A value as people should read it: defaults say which regime they come from.
pub(crate) fn describe<T: std::fmt::Display>(sourced: &Sourced<T>, defaults: Defaults) -> String {
    match (&sourced.source, defaults) {
        (Source::Default, Defaults::KubeletConfiguration) => format!(
            "{} (KubeletConfiguration default: the kubelet runs with --config)",
            sourced.value
        ),
        (Source::Default, Defaults::LegacyFlags) => format!(
            "{} (legacy flag default: the kubelet runs without --config)",
            sourced.value
        ),
        _ => sourced.value.to_string(),
    }
}
