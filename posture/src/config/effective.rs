//! The effective value of a setting, computed as the kubelet computes it: a flag wins over
//! the `--config-dir` drop-ins (later files winning), which win over the `--config` file,
//! which wins over the defaults of the regime the kubelet runs in.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value as Json;

use super::document::{Lookup, lookup};
use super::flags::Flags;
use super::settings::{FlagRef, Setting};
use super::value::Value;
use crate::fsview::FileProblem;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The command line; the flag's name, e.g. `--read-only-port`.
    Flag(String),
    /// A `--config-dir` drop-in file.
    DropIn(PathBuf),
    /// The `--config` file.
    Config(PathBuf),
    /// The kubelet's default in the regime it runs in.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(name) => write!(f, "flag {name}"),
            Self::DropIn(path) => write!(f, "drop-in {}", path.display()),
            Self::Config(path) => write!(f, "config {}", path.display()),
            Self::Default => f.write_str("default"),
        }
    }
}

/// Which defaults fill what neither flags nor files set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defaults {
    /// Started with `--config`: the `KubeletConfiguration` v1beta1 defaults.
    KubeletConfiguration,
    /// Started without `--config`: the legacy flag defaults (anonymous auth on,
    /// `AlwaysAllow`, read-only port 10255).
    LegacyFlags,
}

/// A config file or drop-in as read.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `Config(path)` or `DropIn(path)`.
    pub source: Source,
    /// The parsed document, or why it could not be had.
    pub doc: Result<Json, FileProblem>,
    /// The directory relative paths in it are resolved against, if the kubelet does so.
    pub base_dir: Option<PathBuf>,
}

/// A value with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T = Value> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
    /// For paths read from the config file: the directory a relative one is relative to.
    pub base_dir: Option<PathBuf>,
}

/// Why a setting's effective value cannot be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting.
    pub key: &'static str,
    /// One line, naming the file or flag at fault.
    pub reason: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Flags, files and defaults of one kubelet.
#[derive(Debug, Clone)]
pub struct EffectiveConfig {
    /// The parsed command line.
    pub flags: Flags,
    /// The defaults regime.
    pub defaults: Defaults,
    /// The config file, then the drop-ins in the order the kubelet applies them.
    pub layers: Vec<Layer>,
    /// Why the `--config-dir` could not be listed, if it could not.
    pub config_dir_problem: Option<FileProblem>,
}

impl EffectiveConfig {
    /// The effective value of `setting`.
    pub fn get(&self, setting: &Setting) -> Result<Sourced, SettingError> {
        let fail = |reason: String| SettingError {
            key: setting.key,
            reason,
        };
        match setting.flag {
            FlagRef::Flag(name) => {
                let given: Vec<&str> = self.flags.all(name).collect();
                if let Some(last) = given.last() {
                    let value = if setting.kind == super::Kind::List {
                        // pflag's slices accumulate over repeated flags.
                        Ok(Value::List(
                            given.iter().flat_map(|g| split_list(g)).collect(),
                        ))
                    } else {
                        setting.kind.from_flag(last)
                    };
                    return value
                        .map(|value| Sourced {
                            value,
                            source: Source::Flag(format!("--{name}")),
                            base_dir: None,
                        })
                        .map_err(|e| fail(format!("flag --{name}: {e}")));
                }
            }
            FlagRef::Gate(gate) => {
                if let Some((_, text)) = self.flags.gate(gate) {
                    return setting
                        .kind
                        .from_flag(&text)
                        .map(|value| Sourced {
                            value,
                            source: Source::Flag("--feature-gates".to_owned()),
                            base_dir: None,
                        })
                        .map_err(|e| fail(format!("flag --feature-gates {gate}: {e}")));
                }
            }
        }
        if let Some(problem) = &self.config_dir_problem {
            return Err(fail(format!("config dir {problem}")));
        }
        // A file the kubelet could not load leaves every setting unknown: it would not
        // start with it, so what runs was configured by something we cannot see.
        if let Some((source, problem)) = self.layers.iter().find_map(|l| match &l.doc {
            Err(p) => Some((&l.source, p)),
            Ok(_) => None,
        }) {
            let label = if matches!(source, Source::DropIn(_)) {
                "drop-in"
            } else {
                "config"
            };
            return Err(fail(format!("{label} {problem}")));
        }
        let mut found: Option<(&Json, &Layer)> = None;
        for layer in &self.layers {
            let Ok(doc) = &layer.doc else { continue };
            let drop_in = matches!(layer.source, Source::DropIn(_));
            match lookup(doc, setting.key, drop_in) {
                Lookup::Absent => {}
                // In the config file a null leaves the field to its default. In a drop-in
                // it deletes a key the merged document does not have under that spelling
                // (the base is marshalled with Go field names), so it changes nothing.
                Lookup::Deleted if drop_in => {}
                Lookup::Deleted => found = None,
                Lookup::Found(value) => found = Some((value, layer)),
                Lookup::NotAMapping(prefix) => {
                    return Err(fail(format!("{}: {prefix} is not a mapping", layer.source)));
                }
            }
        }
        if let Some((json, layer)) = found {
            return setting
                .kind
                .from_json(json)
                .map(|value| Sourced {
                    value,
                    source: layer.source.clone(),
                    base_dir: if setting.is_path {
                        layer.base_dir.clone()
                    } else {
                        None
                    },
                })
                .map_err(|e| fail(format!("{}: {}: {e}", layer.source, setting.key)));
        }
        let default = match self.defaults {
            Defaults::KubeletConfiguration => setting.config_default,
            Defaults::LegacyFlags => setting.flag_default,
        };
        Ok(Sourced {
            value: default.value(),
            source: Source::Default,
            base_dir: None,
        })
    }
}

fn split_list(text: &str) -> Vec<String> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split(',').map(str::to_owned).collect()
    }
}
