//! Judging files and directories by mode and owner, one or many at a time, so every file
//! check words its verdict the same way: the file (and the links that led to it), its mode
//! and owner, and any directory on the way that someone other than root could change.

use std::path::PathBuf;

use super::Context;
use super::outcome::{Outcome, Status};
use crate::fsview::{FileFacts, FsRoot};

/// A file a check judges, and why it is judged (`--kubeconfig`, `--config`, `drop-in`).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub path: PathBuf,
    pub why: String,
    /// A missing optional file (a bootstrap kubeconfig deleted after bootstrap) is fine.
    pub optional: bool,
}

impl Target {
    pub fn new(path: impl Into<PathBuf>, why: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            why: why.into(),
            optional: false,
        }
    }

    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// What a file must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Permission bits within this mask (`644 or more restrictive`).
    ModeWithin(u32),
    /// Owner and group root.
    RootOwned,
    /// A private key: no group/other bits at all, owned by root.
    RootOnly,
    /// A directory holding what the kubelet reads: not writable by group/others (the sticky
    /// bit does not help: anyone could still add a drop-in or a key), owned by root.
    RootDir,
}

impl Rule {
    fn holds(self, facts: &FileFacts) -> bool {
        match self {
            Self::ModeWithin(max) => facts.mode_within(max),
            Self::RootOwned => facts.owned_by_root(),
            Self::RootOnly => facts.mode_within(0o700) && facts.uid == 0,
            Self::RootDir => facts.mode & 0o022 == 0 && facts.uid == 0,
        }
    }

    fn wants_dir(self) -> bool {
        self == Self::RootDir
    }
}

/// Judges every target by `rule`. One failing file fails the check; a file that cannot be
/// judged makes it `error` (never `pass`); no target at all is `empty`'s verdict.
pub(crate) fn judge(ctx: &Context, fs: &FsRoot, targets: &[Target], rule: Rule) -> Outcome {
    let mut status = Status::Pass;
    let mut lines = Vec::new();
    let mut whys: Vec<&str> = Vec::new();
    for target in targets {
        if !whys.contains(&target.why.as_str()) {
            whys.push(&target.why);
        }
        let facts = match ctx.facts_in(fs, &target.path) {
            Ok(facts) => facts,
            Err(problem) => {
                if target.optional && matches!(problem, crate::fsview::FileProblem::Missing { .. })
                {
                    continue;
                }
                status = worst(status, Status::Error);
                lines.push(problem.to_string());
                continue;
            }
        };
        let is_dir = facts.resolved.metadata.is_dir();
        if is_dir != rule.wants_dir() {
            status = worst(status, Status::Error);
            let kind = if is_dir {
                "a directory"
            } else {
                "not a directory"
            };
            lines.push(format!("{}: is {kind}", facts.describe_path()));
            continue;
        }
        let mut line = format!("{} {}", facts.describe_path(), facts.describe_mode());
        if !rule.holds(&facts) {
            status = worst(status, Status::Fail);
        }
        // Whoever can write a directory on the way can replace the file, whatever its mode.
        for weak in &facts.weak_dirs {
            status = worst(status, Status::Fail);
            line.push_str("; ");
            line.push_str(&weak.describe());
        }
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push("nothing to judge: every optional file is absent".to_owned());
    }
    Outcome::new(status, lines.join("; "), whys.join(", "))
}

/// The verdict that matters more: fail, then error, then warn, then pass.
pub(crate) fn worst(a: Status, b: Status) -> Status {
    a.min(b)
}
