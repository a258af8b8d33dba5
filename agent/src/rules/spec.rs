//! The rule language, as written in YAML (built-in rules and the config's `rules:`).
//!
//! ```yaml
//! - id: shell-in-container
//!   title: Interactive shell in a container
//!   severity: high                 # info | low | medium | high | critical
//!   techniques: [T1059.004]        # MITRE ATT&CK
//!   on: exec                       # exec | egress
//!   match:                         # any of these condition sets...
//!     - binary: [sh, bash]         # ...each holding when all its conditions hold
//!       tty: true
//!   except:                        # none of these may hold
//!     - namespace: [debug-tools]
//! ```

use std::collections::BTreeMap;

use ipnet::IpNet;
use nodeward_proto::model::Severity;
use serde::Deserialize;

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// Every exec in a watched process.
    Exec,
    /// Every outbound connection or UDP destination.
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProtocolName {
    Tcp,
    Udp,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable identifier, the finding's `ruleId`.
    pub id: String,
    /// One line for people.
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    /// MITRE ATT&CK technique ids.
    #[serde(default)]
    pub techniques: Vec<String>,
    pub on: Trigger,
    /// The rule fires when any of these holds...
    #[serde(rename = "match")]
    pub matches: Vec<Conditions>,
    /// ...and none of these.
    #[serde(default)]
    pub except: Vec<Conditions>,
}

/// Conditions that must all hold. Lists mean "any of"; names are glob patterns, matched
/// against the full path when they contain a `/` and against the file name otherwise.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    #[serde(default)]
    pub binary: Vec<String>,
    /// Substrings, any of which in the argv (joined with spaces).
    #[serde(default)]
    pub args_contain: Vec<String>,
    /// A regular expression over the argv joined with spaces.
    #[serde(default)]
    pub args_regex: Option<String>,
    /// Whether the process has a controlling terminal.
    #[serde(default)]
    pub tty: Option<bool>,
    #[serde(default)]
    pub parent_binary: Vec<String>,
    #[serde(default)]
    pub namespace: Vec<String>,
    /// Every label here, with this value, on the pod.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The container's image (`registry/repo:tag`).
    #[serde(default)]
    pub image: Vec<String>,
    #[serde(default)]
    pub destination_cidr: Vec<IpNet>,
    #[serde(default)]
    pub port: Vec<u16>,
    #[serde(default)]
    pub protocol: Option<ProtocolName>,
}

impl Conditions {
    /// Whether nothing is required (such a set would match everything).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Names of the conditions only an exec can be judged by.
    pub fn exec_only(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if !self.args_contain.is_empty() {
            found.push("argsContain");
        }
        if self.args_regex.is_some() {
            found.push("argsRegex");
        }
        if self.tty.is_some() {
            found.push("tty");
        }
        found
    }

    /// Names of the conditions only a connection can be judged by.
    pub fn egress_only(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if !self.destination_cidr.is_empty() {
            found.push("destinationCidr");
        }
        if !self.port.is_empty() {
            found.push("port");
        }
        if self.protocol.is_some() {
            found.push("protocol");
        }
        found
    }
}

/// The config's `rules:` section: switch built-in rules off, add exceptions, add rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesConfig {
    /// Ids of rules (built-in or custom) that do not run.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// More exceptions for a rule, by id.
    #[serde(default)]
    pub exceptions: BTreeMap<String, Vec<Conditions>>,
    /// Rules of this cluster's own.
    #[serde(default)]
    pub custom: Vec<RuleSpec>,
}
