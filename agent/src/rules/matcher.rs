//! Conditions compiled for fast evaluation: glob sets and regular expressions built once,
//! when rules are loaded.

use std::{collections::BTreeMap, net::IpAddr};

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use regex::Regex;

use super::spec::{Conditions, ProtocolName};

/// What a rule is evaluated against. Missing data never satisfies a condition, neither in
/// `match` nor in `except`: an unknown pod is not exempt from anything.
#[derive(Debug, Default)]
pub struct Subject<'a> {
    pub binary: Option<&'a str>,
    /// argv joined with spaces.
    pub args: Option<&'a str>,
    pub tty: Option<bool>,
    pub parent_binary: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub image: Option<&'a str>,
    pub destination: Option<(IpAddr, u16, ProtocolName)>,
}

/// Glob patterns for file names (no `/`) and for full paths (with `/`).
#[derive(Debug)]
struct Names {
    file_names: GlobSet,
    paths: GlobSet,
}

impl Names {
    fn compile(patterns: &[String]) -> Result<Option<Self>, String> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let (paths, names): (Vec<&String>, Vec<&String>) =
            patterns.iter().partition(|p| p.contains('/'));
        Ok(Some(Self {
            file_names: globs(&names)?,
            paths: globs(&paths)?,
        }))
    }

    fn matches(&self, path: &str) -> bool {
        let file_name = path.rsplit('/').next().unwrap_or(path);
        self.file_names.is_match(file_name) || self.paths.is_match(path)
    }
}

fn globs(patterns: &[&String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        set.add(Glob::new(pattern).map_err(|e| format!("pattern {pattern:?}: {e}"))?);
    }
    set.build().map_err(|e| e.to_string())
}

#[derive(Debug)]
pub struct Matcher {
    binary: Option<Names>,
    args_contain: Vec<String>,
    args_regex: Option<Regex>,
    tty: Option<bool>,
    parent_binary: Option<Names>,
    namespace: Option<GlobSet>,
    labels: BTreeMap<String, String>,
    image: Option<GlobSet>,
    cidrs: Vec<IpNet>,
    ports: Vec<u16>,
    protocol: Option<ProtocolName>,
}

impl Matcher {
    pub fn compile(conditions: &Conditions) -> Result<Self, String> {
        let optional_globs = |patterns: &[String]| -> Result<Option<GlobSet>, String> {
            if patterns.is_empty() {
                Ok(None)
            } else {
                globs(&patterns.iter().collect::<Vec<_>>()).map(Some)
            }
        };
        Ok(Self {
            binary: Names::compile(&conditions.binary).map_err(|e| format!("binary: {e}"))?,
            args_contain: conditions.args_contain.clone(),
            args_regex: conditions
                .args_regex
                .as_deref()
                .map(|r| Regex::new(r).map_err(|e| format!("argsRegex: {e}")))
                .transpose()?,
            tty: conditions.tty,
            parent_binary: Names::compile(&conditions.parent_binary)
                .map_err(|e| format!("parentBinary: {e}"))?,
            namespace: optional_globs(&conditions.namespace)
                .map_err(|e| format!("namespace: {e}"))?,
            labels: conditions.labels.clone(),
            image: optional_globs(&conditions.image).map_err(|e| format!("image: {e}"))?,
            cidrs: conditions.destination_cidr.clone(),
            ports: conditions.port.clone(),
            protocol: conditions.protocol,
        })
    }

    /// Whether every condition holds for `subject`.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let names = |names: &Option<Names>, value: Option<&str>| {
            names
                .as_ref()
                .is_none_or(|n| value.is_some_and(|v| n.matches(v)))
        };
        let set = |set: &Option<GlobSet>, value: Option<&str>| {
            set.as_ref()
                .is_none_or(|g| value.is_some_and(|v| g.is_match(v)))
        };
        let destination = s.destination;
        names(&self.binary, s.binary)
            && (self.args_contain.is_empty()
                || s.args
                    .is_some_and(|a| self.args_contain.iter().any(|c| a.contains(c.as_str()))))
            && self
                .args_regex
                .as_ref()
                .is_none_or(|r| s.args.is_some_and(|a| r.is_match(a)))
            && self.tty.is_none_or(|t| s.tty == Some(t))
            && names(&self.parent_binary, s.parent_binary)
            && set(&self.namespace, s.namespace)
            && (self.labels.is_empty()
                || s.labels
                    .is_some_and(|l| self.labels.iter().all(|(k, v)| l.get(k) == Some(v))))
            && set(&self.image, s.image)
            && (self.cidrs.is_empty()
                || destination.is_some_and(|(ip, _, _)| self.cidrs.iter().any(|c| c.contains(&ip))))
            && (self.ports.is_empty()
                || destination.is_some_and(|(_, port, _)| self.ports.contains(&port)))
            && self
                .protocol
                .is_none_or(|p| destination.is_some_and(|(_, _, q)| q == p))
    }
}
