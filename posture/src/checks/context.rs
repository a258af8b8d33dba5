//! What every check reads from: the kubelet, its effective configuration, kube-proxy, the
//! clock, and the files, each read recorded as a dependency to watch.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::outcome::{Outcome, describe};
use crate::config::{EffectiveConfig, Setting, Source, Sourced, Value};
use crate::deps::Deps;
use crate::fsview::{FileFacts, FileProblem, FsRoot, MAX_CONFIG_BYTES, Resolved};
use crate::kubeconfig::{self, KubeconfigAuth};
use crate::process::ProcessInfo;

/// The kubelet's default `--cert-dir`.
pub(crate) const DEFAULT_CERT_DIR: &str = "/var/lib/kubelet/pki";

/// kube-proxy, as far as it could be found.
#[derive(Debug, Clone)]
pub(crate) enum ProxyView {
    /// Not looked for.
    NotLooked,
    /// Looked for and not found: why.
    NotFound(String),
    /// Found.
    Found(ProcessInfo),
}

/// Inputs of every check.
pub(crate) struct Context<'a> {
    pub kubelet: &'a ProcessInfo,
    pub config: &'a EffectiveConfig,
    pub proxy: &'a ProxyView,
    pub now: SystemTime,
    deps: RefCell<Deps>,
}

impl<'a> Context<'a> {
    pub fn new(
        kubelet: &'a ProcessInfo,
        config: &'a EffectiveConfig,
        proxy: &'a ProxyView,
        now: SystemTime,
        deps: Deps,
    ) -> Self {
        Self {
            kubelet,
            config,
            proxy,
            now,
            deps: RefCell::new(deps),
        }
    }

    /// Everything the checks read.
    pub fn into_deps(self) -> Deps {
        self.deps.into_inner()
    }

    /// The kubelet's filesystem.
    pub fn fs(&self) -> &FsRoot {
        &self.kubelet.fs
    }

    /// A setting's effective value, or the `error` outcome saying why it is unknown.
    pub fn setting(&self, setting: &Setting) -> Result<Sourced, Outcome> {
        self.config.get(setting).map_err(|e| {
            let source = self
                .config
                .layers
                .first()
                .map_or_else(|| "flags".to_owned(), |l| l.source.to_string());
            Outcome::error(e.reason, source)
        })
    }

    /// A boolean setting.
    pub fn bool(&self, setting: &Setting) -> Result<Sourced<bool>, Outcome> {
        let s = self.setting(setting)?;
        match s.value {
            Value::Bool(b) => Ok(Sourced {
                value: b,
                source: s.source,
                base_dir: s.base_dir,
            }),
            other => Err(Outcome::error(
                format!("unexpected value {other}"),
                s.source.to_string(),
            )),
        }
    }

    /// An integer setting.
    pub fn int(&self, setting: &Setting) -> Result<Sourced<i64>, Outcome> {
        let s = self.setting(setting)?;
        match s.value {
            Value::Int(i) => Ok(Sourced {
                value: i,
                source: s.source,
                base_dir: s.base_dir,
            }),
            other => Err(Outcome::error(
                format!("unexpected value {other}"),
                s.source.to_string(),
            )),
        }
    }

    /// A value described for people, with the regime for defaults.
    pub fn describe<T: std::fmt::Display>(&self, sourced: &Sourced<T>) -> String {
        describe(sourced, self.config.defaults)
    }

    /// A path setting as the kubelet resolves it: relative to the config file's directory
    /// when it came from there, else to the kubelet's working directory.
    pub fn path_of(sourced: &Sourced) -> Option<PathBuf> {
        match &sourced.value {
            Value::Str(s) if !s.is_empty() => Some(FsRoot::relative_to(
                sourced.base_dir.as_deref(),
                Path::new(s),
            )),
            _ => None,
        }
    }

    /// Mode, owner and weak directories of a file, recorded as a dependency.
    pub fn facts_in(&self, fs: &FsRoot, path: &Path) -> Result<FileFacts, FileProblem> {
        let facts = fs.facts(path);
        let mut deps = self.deps.borrow_mut();
        match &facts {
            Ok(f) => deps.resolved(fs, &f.resolved),
            Err(_) => deps.attempted(fs, path),
        }
        facts
    }

    /// [`Self::facts_in`] the kubelet's filesystem.
    pub fn facts(&self, path: &Path) -> Result<FileFacts, FileProblem> {
        self.facts_in(self.fs(), path)
    }

    /// Reads a text file, recorded as a dependency.
    pub fn read_in(
        &self,
        fs: &FsRoot,
        path: &Path,
        limit: u64,
    ) -> Result<(Resolved, String), FileProblem> {
        let read = fs.read_text(path, limit);
        let mut deps = self.deps.borrow_mut();
        match &read {
            Ok((r, _)) => deps.resolved(fs, r),
            Err(_) => deps.attempted(fs, path),
        }
        read
    }

    /// Lists a directory, recorded as a dependency.
    pub fn list(&self, path: &Path) -> Result<(Resolved, Vec<String>), FileProblem> {
        let listed = self.fs().list_dir(path);
        let mut deps = self.deps.borrow_mut();
        match &listed {
            Ok((r, _)) => deps.resolved(self.fs(), r),
            Err(_) => deps.attempted(self.fs(), path),
        }
        listed
    }

    /// `--kubeconfig`, if the kubelet has one.
    pub fn kubeconfig_path(&self) -> Option<PathBuf> {
        self.config
            .flags
            .last("kubeconfig")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }

    /// How the kubelet authenticates to the API server, with the directory relative paths
    /// in the kubeconfig are relative to. `None`: no `--kubeconfig` (standalone kubelet).
    pub fn kubeconfig(&self) -> Option<Result<(PathBuf, KubeconfigAuth), String>> {
        let path = self.kubeconfig_path()?;
        Some(
            self.read_in(self.fs(), &path, MAX_CONFIG_BYTES)
                .map_err(|p| p.to_string())
                .and_then(|(resolved, text)| {
                    let auth = kubeconfig::parse(&text)
                        .map_err(|e| format!("{}: {e}", resolved.path.display()))?;
                    let named = crate::config::layers::named_path(self.fs(), &path);
                    let dir = named.parent().map(Path::to_path_buf).unwrap_or_default();
                    Ok((dir, auth))
                }),
        )
    }

    /// `--cert-dir` and where it came from.
    pub fn cert_dir(&self) -> (PathBuf, Source) {
        match self.config.flags.last("cert-dir").filter(|p| !p.is_empty()) {
            Some(dir) => (PathBuf::from(dir), Source::Flag("--cert-dir".to_owned())),
            None => (PathBuf::from(DEFAULT_CERT_DIR), Source::Default),
        }
    }
}
