//! The regular files of a repository at one revision, held in memory.
//!
//! Nothing here follows a symlink: symlinks are recorded by path and never read, so a
//! repository cannot make the host read its own files (`/etc/passwd`, service account tokens).

use super::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `revision` of a snapshot read from a plain directory.
pub const WORKTREE: &str = "worktree";

/// Deepest directory nesting read; deeper entries are refused, not read.
pub const MAX_DEPTH: usize = 32;

/// A tree entry that is not read: a `.git` entry, a name that is not UTF-8 or not a valid
/// file name, a name differing from another only in case, a file over the per-file limit, or
/// an entry nested too deep. The kit that holds it fails; other kits go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Repository-relative path; bytes that are not UTF-8 are shown as `\xNN`.
    pub path: String,
    /// Why it is refused.
    pub reason: String,
}

/// A file name as text, lossless: printable ASCII as it is, `\` doubled, every other byte
/// of a name that is not UTF-8 as `\xNN`.
pub fn escape_name(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes
            .iter()
            .map(|b| match b {
                b'\\' => "\\\\".to_owned(),
                0x20..=0x7e => char::from(*b).to_string(),
                _ => format!("\\x{b:02x}"),
            })
            .collect(),
    }
}

/// Size limits on what a snapshot may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file, in bytes (default 32 MiB: room for a plugin built from an
    /// interpreted language, a Python component being about 18 MB; YAML has its own, lower,
    /// budgets per kit).
    pub file_bytes: u64,
    /// Most regular files in the tree (default 20,000).
    pub files: usize,
    /// Largest sum of file sizes, in bytes (default 512 MiB).
    pub total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_bytes: 32 << 20,
            files: 20_000,
            total_bytes: 512 << 20,
        }
    }
}

/// A repository's regular files at one revision, keyed by normalised, '/'-separated,
/// repository-relative paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The commit's hex id, or [`WORKTREE`] for a directory.
    pub revision: String,
    /// Symlinks in the tree, by path: recorded so callers can report them, never followed.
    pub symlinks: Vec<String>,
    /// Submodules (gitlinks) in the tree, by path: skipped.
    pub submodules: Vec<String>,
    /// Entries refused and not read, with why.
    pub refused: Vec<Refused>,
    files: BTreeMap<String, Arc<[u8]>>,
}

impl Snapshot {
    /// A snapshot of in-memory files (for tests and callers that build trees themselves).
    ///
    /// # Errors
    /// A path that is not normalised and relative ([`Error::BadRef`]), or a limit exceeded.
    pub fn from_files<P, B>(
        revision: impl Into<String>,
        files: impl IntoIterator<Item = (P, B)>,
    ) -> Result<Snapshot>
    where
        P: Into<String>,
        B: Into<Vec<u8>>,
    {
        let mut builder = Builder::new(revision.into(), Limits::default());
        for (path, bytes) in files {
            let path = path.into();
            check_path(&path)?;
            builder.add(path, bytes.into())?;
        }
        Ok(builder.finish())
    }

    /// Reads the regular files below `dir` (for `kitsync check DIR`), without following symlinks.
    /// `.git` (anywhere) and `target` (at the top) are skipped; sockets, FIFOs and devices too.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file, [`Error::TooLarge`], or [`Error::BadRef`] for a
    /// file name that is not UTF-8.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Snapshot> {
        Self::from_dir_with(dir, Limits::default())
    }

    /// [`Snapshot::from_dir`] with other limits.
    ///
    /// # Errors
    /// As [`Snapshot::from_dir`].
    pub fn from_dir_with(dir: impl AsRef<Path>, limits: Limits) -> Result<Snapshot> {
        let root = dir.as_ref();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let mut builder = Builder::new(WORKTREE.to_owned(), limits);
        // Depth-first with an explicit stack: a deep tree cannot overflow ours.
        let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let mut entries = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(io(&dir))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    use std::os::unix::ffi::OsStrExt;
                    builder.refuse(
                        format!("{prefix}{}", escape_name(name.as_bytes())),
                        "its name is not UTF-8",
                    );
                    continue;
                };
                let path = format!("{prefix}{name}");
                // `file_type` is the entry's own type: lstat, never the symlink's target.
                let kind = entry.file_type().map_err(io(&entry.path()))?;
                if prefix.is_empty() && (name == ".git" || (name == "target" && kind.is_dir())) {
                    continue; // the checkout's own repository and build output
                }
                if name == ".git" {
                    builder.refuse(path, "a .git entry inside the tree");
                } else if kind.is_symlink() {
                    builder.symlinks.push(path);
                } else if kind.is_dir() {
                    if builder.too_deep(&path) {
                        continue;
                    }
                    stack.push((entry.path(), format!("{path}/")));
                } else if kind.is_file() {
                    let listed = entry.metadata().map_err(io(&entry.path()))?;
                    if builder.oversized(&path, listed.len()) {
                        continue;
                    }
                    builder.check(&path, listed.len())?;
                    let bytes = read_regular(&entry.path(), &listed).map_err(io(&entry.path()))?;
                    builder.add(path, bytes)?;
                } else {
                    tracing::debug!(path, "not a regular file, skipped");
                    builder.refuse(
                        path,
                        "not a regular file, directory or symlink (a FIFO, socket or device)",
                    );
                }
            }
        }
        Ok(builder.finish())
    }

    /// Reads revision `rev` (`HEAD`, a branch, a tag, `HEAD~1`, a hex id) of the repository
    /// that contains `repo_dir`, from Git objects only (the worktree is not read).
    ///
    /// # Errors
    /// [`Error::BadRef`] when `rev` does not resolve to a commit, [`Error::Git`] when no
    /// repository is found, or a limit exceeded.
    pub fn from_git(repo_dir: impl AsRef<Path>, rev: &str) -> Result<Snapshot> {
        if rev.starts_with('-') || rev.is_empty() {
            return Err(Error::BadRef {
                reference: rev.to_owned(),
                reason: "a revision may not be empty or start with '-'".into(),
            });
        }
        let repo_dir = repo_dir.as_ref();
        let repo = gix::discover(repo_dir)
            .map_err(|e| Error::Git(format!("no repository at {}: {e}", repo_dir.display())))?;
        let bad = |e: &dyn std::fmt::Display| Error::BadRef {
            reference: rev.to_owned(),
            reason: e.to_string(),
        };
        let id = repo.rev_parse_single(rev).map_err(|e| bad(&e))?;
        let commit = id
            .object()
            .map_err(|e| bad(&e))?
            .peel_to_commit()
            .map_err(|e| bad(&e))?;
        read_commit(&repo, commit.id, Limits::default())
    }

    /// The file at `path`, if the snapshot has a regular file there.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|b| &b[..])
    }

    /// Every file, in path order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(p, b)| (p.as_str(), &b[..]))
    }

    /// Paths of the files below directory `dir` (`""` for all), in order.
    pub fn paths_under<'a>(&'a self, dir: &str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = match dir.trim_end_matches('/') {
            "" => String::new(),
            d => format!("{d}/"),
        };
        self.files
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .map(|(p, _)| p.as_str())
            .take_while(move |p| p.starts_with(&prefix))
    }

    /// The files below directory `dir` (`""` for all), re-rooted there: the view of a source
    /// whose kits live in a sub-directory of the repository. Same revision.
    pub fn subtree(&self, dir: &str) -> Snapshot {
        let dir = dir.trim_matches('/');
        if dir.is_empty() {
            return self.clone();
        }
        let prefix = format!("{dir}/");
        let strip = |paths: &[String]| -> Vec<String> {
            paths
                .iter()
                .filter_map(|p| p.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        };
        Snapshot {
            revision: self.revision.clone(),
            symlinks: strip(&self.symlinks),
            submodules: strip(&self.submodules),
            refused: self
                .refused
                .iter()
                .filter_map(|r| {
                    Some(Refused {
                        path: r.path.strip_prefix(&prefix)?.to_owned(),
                        reason: r.reason.clone(),
                    })
                })
                .collect(),
            files: self
                .files
                .iter()
                .filter_map(|(p, b)| Some((p.strip_prefix(&prefix)?.to_owned(), b.clone())))
                .collect(),
        }
    }

    /// How many files the snapshot holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the snapshot holds no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// For callers that treat a symlink as an error rather than ignore it.
    ///
    /// # Errors
    /// [`Error::Symlink`] naming the first symlink.
    pub fn deny_symlinks(&self) -> Result<()> {
        match self.symlinks.first() {
            Some(path) => Err(Error::Symlink { path: path.clone() }),
            None => Ok(()),
        }
    }
}

/// Reads the regular file that `listed` (its lstat) describes. If the path was swapped for
/// a symlink or another file since the listing, the opened file's identity differs: refuse it.
fn read_regular(path: &Path, listed: &std::fs::Metadata) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut file = std::fs::File::open(path)?;
    let opened = file.metadata()?;
    if !opened.is_file() || (opened.dev(), opened.ino()) != (listed.dev(), listed.ino()) {
        return Err(std::io::Error::other("file changed while being read"));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads the tree of `commit` from `repo`'s objects.
pub(crate) fn read_commit(repo: &gix::Repository, commit: gix::ObjectId, limits: Limits) -> Result<Snapshot> {
    let git = |e: gix::Error| Error::Git(e.to_string());
    let tree = repo
        .find_commit(commit)
        .map_err(git)?
        .tree_id()
        .map_err(git)?
        .detach();
    let mut builder = Builder::new(commit.to_string(), limits);
    let mut stack: Vec<(gix::ObjectId, String)> = vec![(tree, String::new())];
    while let Some((id, prefix)) = stack.pop() {
        let tree = repo.find_tree(id).map_err(git)?;
        let decoded = tree.decode().map_err(git)?;
        for entry in &decoded.entries {
            let Ok(name) = std::str::from_utf8(entry.filename) else {
                builder.refuse(
                    format!("{prefix}{}", escape_name(entry.filename)),
                    "its name is not UTF-8",
                );
                continue;
            };
            let path = format!("{prefix}{name}");
            // Git refuses such names; a crafted tree could still hold them.
            if matches!(name, "" | "." | "..") || name.contains(['/', '\\', '\0']) {
                builder.refuse(escape_name(path.as_bytes()), "not a valid file name");
                continue;
            }
            if name.eq_ignore_ascii_case(".git") {
                builder.refuse(path, "a .git entry inside the tree");
                continue;
            }
            let oid = entry.oid.to_owned();
            let mode = entry.mode;
            if mode.is_tree() {
                if builder.too_deep(&path) {
                    continue;
                }
                stack.push((oid, format!("{path}/")));
            } else if mode.is_link() {
                builder.symlinks.push(path);
            } else if mode.is_commit() {
                builder.submodules.push(path);
            } else if mode.is_blob() {
                // The size comes from the object header: a huge blob is never inflated.
                let size = repo.find_header(oid).map_err(git)?.size();
                if builder.oversized(&path, size) {
                    continue;
                }
                builder.check(&path, size)?;
                let data = repo.find_blob(oid).map_err(git)?.take_data();
                builder.add(path, data)?;
            }
        }
    }
    Ok(builder.finish())
}

/// Rejects paths that are absolute, empty, or contain `.`/`..`/empty components.
fn check_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path.split('/').all(|c| !matches!(c, "" | "." | ".."));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRef {
            reference: path.to_owned(),
            reason: "not a normalised repository-relative path".into(),
        })
    }
}

/// Collects files while enforcing [`Limits`].
struct Builder {
    revision: String,
    limits: Limits,
    total: u64,
    files: BTreeMap<String, Arc<[u8]>>,
    symlinks: Vec<String>,
    submodules: Vec<String>,
    refused: Vec<Refused>,
}

impl Builder {
    fn refuse(&mut self, path: String, reason: impl Into<String>) {
        self.refused.push(Refused {
            path,
            reason: reason.into(),
        });
    }

    /// Refuses (and says so) a directory nested deeper than [`MAX_DEPTH`].
    fn too_deep(&mut self, path: &str) -> bool {
        let deep = path.split('/').count() >= MAX_DEPTH;
        if deep {
            self.refuse(
                path.to_owned(),
                format!("nested deeper than {MAX_DEPTH} directories"),
            );
        }
        deep
    }

    /// Refuses (and says so) a file over the per-file limit, before it is read.
    fn oversized(&mut self, path: &str, bytes: u64) -> bool {
        let over = bytes > self.limits.file_bytes;
        if over {
            self.refuse(
                path.to_owned(),
                format!(
                    "{bytes} bytes is over the per-file limit of {} bytes",
                    self.limits.file_bytes
                ),
            );
        }
        over
    }

    fn new(revision: String, limits: Limits) -> Self {
        Builder {
            revision,
            limits,
            total: 0,
            files: BTreeMap::new(),
            symlinks: Vec::new(),
            submodules: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Checks a file of `bytes` against the limits before it is read.
    fn check(&self, path: &str, bytes: u64) -> Result<()> {
        let too_large = |limit: String| {
            Err(Error::TooLarge {
                path: path.to_owned(),
                bytes,
                limit,
            })
        };
        if bytes > self.limits.file_bytes {
            return too_large(format!("the per-file limit of {} bytes", self.limits.file_bytes));
        }
        if self.files.len() >= self.limits.files {
            return too_large(format!("the limit of {} files", self.limits.files));
        }
        if self.total.saturating_add(bytes) > self.limits.total_bytes {
            return too_large(format!("the total limit of {} bytes", self.limits.total_bytes));
        }
        Ok(())
    }

    fn add(&mut self, path: String, bytes: Vec<u8>) -> Result<()> {
        // Checked again on the bytes actually read: a file may grow after its metadata was read.
        self.check(&path, bytes.len() as u64)?;
        self.total += bytes.len() as u64;
        self.files.insert(path, bytes.into());
        Ok(())
    }

    fn finish(mut self) -> Snapshot {
        self.symlinks.sort();
        self.submodules.sort();
        // Names that differ only in case are one file on a case-insensitive file system
        // (a review checkout on a laptop) and two in Git: which one is read is ambiguous.
        let mut by_folded: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for path in self.files.keys().chain(&self.symlinks) {
            by_folded
                .entry(path.to_lowercase())
                .or_default()
                .push(path.clone());
        }
        for paths in by_folded.values().filter(|p| p.len() > 1) {
            for path in paths {
                let others: Vec<&str> = paths.iter().filter(|p| *p != path).map(String::as_str).collect();
                self.refused.push(Refused {
                    path: path.clone(),
                    reason: format!("differs only in case from {}", others.join(", ")),
                });
            }
        }
        self.refused.sort_by(|a, b| a.path.cmp(&b.path));
        Snapshot {
            revision: self.revision,
            symlinks: self.symlinks,
            submodules: self.submodules,
            refused: self.refused,
            files: self.files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            file_bytes: 10,
            files: 3,
            total_bytes: 25,
        }
    }

    #[test]
    fn paths_under_lists_only_that_directory() {
        let snap = Snapshot::from_files(
            "r",
            [("a/x.yaml", "1"), ("a/y/z.yaml", "2"), ("ab/c", "3"), ("b", "4")],
        )
        .expect("valid");
        assert_eq!(
            snap.paths_under("a").collect::<Vec<_>>(),
            ["a/x.yaml", "a/y/z.yaml"]
        );
        assert_eq!(snap.paths_under("a/").count(), 2);
        assert_eq!(snap.paths_under("").count(), 4);
        assert_eq!(snap.get("ab/c"), Some(&b"3"[..]));
    }

    #[test]
    fn from_files_rejects_paths_that_leave_the_tree() {
        for bad in ["/etc/passwd", "../x", "a/../b", "a//b", "./a", ""] {
            assert!(Snapshot::from_files("r", [(bad, "x")]).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_name_the_file() {
        let mut b = Builder::new("r".into(), small());
        let e = b.add("big".into(), vec![0; 11]).expect_err("over the file limit");
        assert!(
            matches!(e, Error::TooLarge { ref path, bytes: 11, .. } if path == "big"),
            "{e}"
        );
        b.add("a".into(), vec![0; 10]).expect("fits");
        b.add("b".into(), vec![0; 10]).expect("fits");
        let e = b.add("c".into(), vec![0; 10]).expect_err("over the total");
        assert!(e.to_string().contains("total limit of 25"), "{e}");
        b.add("d".into(), vec![0; 1]).expect("fits");
        let e = b.add("e".into(), vec![]).expect_err("over the count");
        assert!(e.to_string().contains("3 files"), "{e}");
    }
}
