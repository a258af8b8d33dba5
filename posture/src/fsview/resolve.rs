//! Resolving a path the way the kubelet sees it, without ever leaving its root.
//!
//! Every component is `lstat`ed and every symlink is followed here, not by the kernel:
//! the kernel would resolve an absolute target against *our* root, which offline (a host
//! root copied or mounted elsewhere) or live (`/proc/<pid>/root` of a kubelet in another
//! mount namespace) is the wrong tree.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::{Cwd, FileProblem, FsRoot};

/// Linux's own limit on symlinks followed in one resolution (`MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// A symlink met while resolving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Where the link is, in the kubelet's view.
    pub path: PathBuf,
    /// What it points to, as written in the link.
    pub target: PathBuf,
}

/// A path resolved inside the kubelet's root.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The path as the kubelet (or a config file) named it.
    pub requested: PathBuf,
    /// The final object, in the kubelet's view, symlinks resolved.
    pub path: PathBuf,
    /// Where this process reads the final object.
    pub reader: PathBuf,
    /// The symlinks followed, in order.
    pub links: Vec<Link>,
    /// `lstat` of the final object (never a symlink).
    pub metadata: fs::Metadata,
    /// Every directory in which a name was looked up (kubelet view → reader path): whoever
    /// can write one of them can swap the file or a link on the way to it.
    pub lookup_dirs: BTreeMap<PathBuf, PathBuf>,
}

enum Step {
    Root,
    Parent,
    Name(OsString),
}

fn steps(path: &Path) -> impl Iterator<Item = Step> + '_ {
    path.components().filter_map(|c| match c {
        Component::RootDir | Component::Prefix(_) => Some(Step::Root),
        Component::CurDir => None,
        Component::ParentDir => Some(Step::Parent),
        Component::Normal(n) => Some(Step::Name(n.to_owned())),
    })
}

struct Walk<'a> {
    fs: &'a FsRoot,
    base: PathBuf,
    base_display: PathBuf,
    stack: Vec<OsString>,
}

impl Walk<'_> {
    fn display(&self) -> PathBuf {
        self.stack
            .iter()
            .fold(self.base_display.clone(), |p, c| p.join(c))
    }

    fn reader(&self) -> PathBuf {
        self.stack.iter().fold(self.base.clone(), |p, c| p.join(c))
    }

    fn reset_to_root(&mut self) {
        self.base.clone_from(&self.fs.root);
        self.base_display = PathBuf::from("/");
        self.stack.clear();
    }
}

impl FsRoot {
    /// Resolves `requested` (absolute, or relative to the kubelet's working directory).
    pub fn resolve(&self, requested: &Path) -> Result<Resolved, FileProblem> {
        let mut walk = Walk {
            fs: self,
            base: self.root.clone(),
            base_display: PathBuf::from("/"),
            stack: Vec::new(),
        };
        let mut pending: VecDeque<Step> = VecDeque::new();
        if !requested.is_absolute() {
            match &self.cwd {
                Cwd::Node(cwd) => pending.extend(steps(cwd)),
                Cwd::Opaque(reader) => {
                    walk.base.clone_from(reader);
                    walk.base_display = PathBuf::from("(kubelet working directory)");
                }
            }
        }
        pending.extend(steps(requested));
        let display_requested = || walk_display(requested, &self.cwd);
        let mut links = Vec::new();
        let mut lookup_dirs = BTreeMap::new();
        let mut hops = 0;
        while let Some(step) = pending.pop_front() {
            match step {
                Step::Root => walk.reset_to_root(),
                // `..` at the root stays at the root, as it does in a chroot.
                Step::Parent => {
                    if walk.stack.pop().is_none() && walk.base != self.root {
                        return Err(FileProblem::Escapes {
                            path: display_requested(),
                        });
                    }
                }
                Step::Name(name) => {
                    lookup_dirs.insert(walk.display(), walk.reader());
                    let reader = walk.reader().join(&name);
                    let display = walk.display().join(&name);
                    let meta = match fs::symlink_metadata(&reader) {
                        Ok(meta) => meta,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            return Err(missing(display_requested(), &display, &links));
                        }
                        Err(e) => return Err(FileProblem::from_io(display, &e)),
                    };
                    if meta.file_type().is_symlink() {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(FileProblem::SymlinkLoop {
                                path: display_requested(),
                            });
                        }
                        let target = fs::read_link(&reader)
                            .map_err(|e| FileProblem::from_io(display.clone(), &e))?;
                        // The target replaces the link; a relative one starts from the
                        // link's directory, which is where the walk stands.
                        let mut next: VecDeque<Step> = steps(&target).collect();
                        next.extend(pending.drain(..));
                        pending = next;
                        links.push(Link {
                            path: display,
                            target,
                        });
                    } else {
                        if !pending.is_empty() && !meta.is_dir() {
                            return Err(FileProblem::NotADirectory { path: display });
                        }
                        walk.stack.push(name);
                    }
                }
            }
        }
        let reader = walk.reader();
        let path = walk.display();
        let metadata =
            fs::symlink_metadata(&reader).map_err(|e| FileProblem::from_io(path.clone(), &e))?;
        Ok(Resolved {
            requested: requested.to_path_buf(),
            path,
            reader,
            links,
            metadata,
            lookup_dirs,
        })
    }
}

fn walk_display(requested: &Path, cwd: &Cwd) -> PathBuf {
    match cwd {
        Cwd::Node(dir) if requested.is_relative() => dir.join(requested),
        _ => requested.to_path_buf(),
    }
}

/// A dangling symlink says where it points, so the reader knows what is missing.
fn missing(requested: PathBuf, at: &Path, links: &[Link]) -> FileProblem {
    if links.is_empty() {
        FileProblem::Missing { path: requested }
    } else {
        FileProblem::Invalid {
            path: requested,
            reason: format!("dangling symlink: {} does not exist", at.display()),
        }
    }
}
