//! Reading the `--config` file and the `--config-dir` drop-ins as the kubelet reads them.

use std::path::{Path, PathBuf};

use super::document::{DocumentKind, parse_document};
use super::effective::{Defaults, EffectiveConfig, Layer, Source};
use super::flags::Flags;
use crate::deps::Deps;
use crate::fsview::{Cwd, FileProblem, FsRoot, MAX_CONFIG_BYTES};

/// Deeper `--config-dir` trees than this are not a real layout.
const MAX_DROP_IN_DEPTH: usize = 8;
/// More drop-ins than this are not a real layout either.
const MAX_DROP_INS: usize = 256;

/// Builds the effective configuration of a kubelet from its flags and files.
pub(crate) fn load(flags: Flags, fs: &FsRoot, deps: &mut Deps) -> EffectiveConfig {
    let config = flags
        .last("config")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let config_dir = flags
        .last("config-dir")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    // Without --config the kubelet keeps its flag-built configuration, legacy defaults
    // included, even when --config-dir patches it.
    let defaults = if config.is_some() {
        Defaults::KubeletConfiguration
    } else {
        Defaults::LegacyFlags
    };
    let mut layers = Vec::new();
    if let Some(path) = &config {
        let named = named_path(fs, path);
        // The kubelet resolves relative paths in its config file against the directory of
        // the file as named (`resolveRelativePaths`), not of a symlink's target.
        let base = named.parent().map(Path::to_path_buf);
        layers.push(layer(fs, path, Source::Config(named), base, deps));
    }
    let mut config_dir_problem = None;
    if let Some(dir) = &config_dir {
        let mut files = Vec::new();
        match walk(fs, dir, 0, &mut files, deps) {
            Ok(()) => {
                for file in files {
                    let source = Source::DropIn(named_path(fs, &file));
                    // Drop-ins are merged as JSON: their relative paths stay as written.
                    layers.push(layer(fs, &file, source, None, deps));
                }
            }
            Err(problem) => {
                deps.attempted(fs, dir);
                config_dir_problem = Some(problem);
            }
        }
    }
    EffectiveConfig {
        flags,
        defaults,
        layers,
        config_dir_problem,
    }
}

fn layer(
    fs: &FsRoot,
    path: &Path,
    source: Source,
    base_dir: Option<PathBuf>,
    deps: &mut Deps,
) -> Layer {
    let doc = match fs.read_text(path, MAX_CONFIG_BYTES) {
        Ok((resolved, text)) => {
            deps.resolved(fs, &resolved);
            parse_document(&text, DocumentKind::Kubelet).map_err(|reason| FileProblem::Invalid {
                path: resolved.path.clone(),
                reason,
            })
        }
        Err(problem) => {
            deps.attempted(fs, path);
            Err(problem)
        }
    };
    Layer {
        source,
        doc,
        base_dir,
    }
}

/// `filepath.WalkDir` order: entries sorted by name, directories entered where they sort,
/// `*.conf` files collected. Entries that are symlinks are files to `WalkDir`, never entered.
fn walk(
    fs: &FsRoot,
    dir: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
    deps: &mut Deps,
) -> Result<(), FileProblem> {
    let (resolved, names) = fs.list_dir(dir)?;
    deps.resolved(fs, &resolved);
    for name in names {
        let path = dir.join(&name);
        let is_real_dir =
            std::fs::symlink_metadata(resolved.reader.join(&name)).is_ok_and(|m| m.is_dir());
        if is_real_dir {
            if depth + 1 >= MAX_DROP_IN_DEPTH {
                return Err(FileProblem::Invalid {
                    path: resolved.path.join(&name),
                    reason: format!("drop-in directories nested deeper than {MAX_DROP_IN_DEPTH}"),
                });
            }
            walk(fs, &path, depth + 1, files, deps)?;
        } else if Path::new(&name).extension().is_some_and(|e| e == "conf") || name == ".conf" {
            if files.len() >= MAX_DROP_INS {
                return Err(FileProblem::Invalid {
                    path: resolved.path.clone(),
                    reason: format!("more than {MAX_DROP_INS} drop-in files"),
                });
            }
            files.push(path);
        }
    }
    Ok(())
}

/// A path as the kubelet names it, made absolute against its working directory.
pub(crate) fn named_path(fs: &FsRoot, path: &Path) -> PathBuf {
    match fs.cwd() {
        Cwd::Node(cwd) => cwd.join(path),
        Cwd::Opaque(_) => path.to_path_buf(),
    }
}
