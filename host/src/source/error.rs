//! What can go wrong reading a source; every URL in a message is redacted.

use std::path::PathBuf;

/// A source or snapshot error. URLs held here are already redacted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The remote has no branch or tag of that name, or the pinned commit is not in it.
    #[error("{url} has no {reference}")]
    MissingRef {
        /// The redacted remote URL.
        url: String,
        /// The wanted reference, as written (`branch:main`).
        reference: String,
    },
    /// The remote rejected the credential (HTTP 401/403, ssh permission denied).
    #[error("{url} rejected the credentials (or none were configured)")]
    Unauthenticated {
        /// The redacted remote URL.
        url: String,
    },
    /// Credentials were configured for a plain-http URL; they are only sent over https or ssh.
    #[error("{url}: refusing to send credentials over plain http; use an https URL")]
    InsecureCredentials {
        /// The redacted remote URL.
        url: String,
    },
    /// The remote could not be reached: connection refused, name resolution, timeout.
    #[error("{url} is unreachable")]
    Unreachable {
        /// The redacted remote URL.
        url: String,
        /// Why, with credentials removed from the text.
        #[source]
        source: std::io::Error,
    },
    /// No tag of the remote matches the semver requirement.
    #[error("{url} has no tag matching semver {requirement}")]
    NoMatchingTag {
        /// The redacted remote URL.
        url: String,
        /// The requirement, like `>=1.0, <2`.
        requirement: String,
    },
    /// A reference, revision or URL that is malformed or could be read as an option.
    #[error("bad reference {reference:?}: {reason}")]
    BadRef {
        /// The reference (or redacted URL) as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A symlink where the caller asked for none (see `Snapshot::deny_symlinks`).
    #[error("{path} is a symlink; symlinks are never followed")]
    Symlink {
        /// The repository-relative path.
        path: String,
    },
    /// A file, or the whole tree, is over a size limit.
    #[error("{path} is too large ({bytes} bytes, or the tree is past {limit})")]
    TooLarge {
        /// The file, or the last file read before the tree went over.
        path: String,
        /// The file's size in bytes.
        bytes: u64,
        /// The limit that was exceeded, in words.
        limit: String,
    },
    /// The repository holds an object larger than a fetch may inflate
    /// ([`super::git::MAX_OBJECT_BYTES`]); the source keeps its last commit.
    #[error(
        "{url}: the repository holds an object larger than the {limit_mib} MiB a fetch may inflate; it cannot be fetched"
    )]
    ObjectTooLarge {
        /// The redacted remote URL.
        url: String,
        /// The limit, MiB.
        limit_mib: usize,
    },
    /// Reading a file (a directory's file, a secret file, the cache) failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A secret's environment variable is unset or not UTF-8.
    #[error("environment variable {var} (a source secret) is not set")]
    MissingSecret {
        /// The variable's name.
        var: String,
    },
    /// Any other Git failure, with credentials removed from the text.
    #[error("git: {0}")]
    Git(String),
}

impl Error {
    /// A stable label for metrics and status.
    pub fn label(&self) -> &'static str {
        match self {
            Error::MissingRef { .. } => "missing_ref",
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::InsecureCredentials { .. } => "insecure_credentials",
            Error::Unreachable { .. } => "unreachable",
            Error::NoMatchingTag { .. } => "no_matching_tag",
            Error::BadRef { .. } => "bad_ref",
            Error::Symlink { .. } => "symlink",
            Error::TooLarge { .. } => "too_large",
            Error::ObjectTooLarge { .. } => "object_too_large",
            Error::Io { .. } => "io",
            Error::MissingSecret { .. } => "missing_secret",
            Error::Git(_) => "git",
        }
    }
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
