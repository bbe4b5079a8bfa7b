//! Git sources and in-memory snapshots of a revision: the pipeline's input.
//!
//! A [`Source`] mirrors one remote into a bare cache and is polled by ref listing; a
//! [`Snapshot`] holds a revision's regular files in memory, read from Git objects (or a
//! plain directory for `kitsync check DIR`), with symlinks recorded and never followed.
//!
//! ```no_run
//! use kitsync::source::{RefSpec, Source, SourceConfig};
//! # fn main() -> Result<(), kitsync::source::Error> {
//! let config = SourceConfig::new("https://example.com/gitops.git", RefSpec::parse("main")?, "/var/cache/kitsync/gitops");
//! let source = Source::open(config)?;
//! let outcome = source.poll()?; // lists refs; fetches only when `main` moved
//! let snapshot = source.snapshot(outcome.commit())?;
//! for (path, bytes) in snapshot.files() {
//!     println!("{path}: {} bytes", bytes.len());
//! }
//! # Ok(())
//! # }
//! ```

mod auth;
mod error;
mod git;
mod notes;
mod push;
mod redact;
mod refspec;
mod snapshot;

pub use auth::{Auth, Secret};
pub use error::{Error, Result};
pub use git::{CommitInfo, MAX_OBJECT_BYTES, PollOutcome, Source, SourceConfig};
pub use notes::{Convergence, NOTES_REF, NoteError, Notes, Recorded};
pub use redact::{redact_text, redact_url};
pub use refspec::RefSpec;
pub use snapshot::{Limits, MAX_DEPTH, Refused, Snapshot, WORKTREE, escape_name};
