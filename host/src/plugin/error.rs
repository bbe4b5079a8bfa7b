//! Typed plugin errors: which plugin, which kit, which phase, and what went wrong.

use std::fmt;

/// Result alias of the plugin module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The step during which a plugin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Digest check, compilation, import inspection.
    Load,
    /// Calling `metadata`.
    Metadata,
    /// Calling `validate-config`.
    Configure,
    /// Calling `transform`.
    Transform,
    /// Calling `validate`.
    Validate,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Load => "load",
            Phase::Metadata => "metadata",
            Phase::Configure => "validate-config",
            Phase::Transform => "transform",
            Phase::Validate => "validate",
        })
    }
}

/// A plugin malfunction. Policy violations are never errors; they are diagnostics.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin}{}: {phase}: {kind}", kit.as_deref().map(|k| format!(" (kit {k})")).unwrap_or_default())]
pub struct Error {
    /// The plugin's name (its path or metadata name).
    pub plugin: String,
    /// The kit it ran for, when known.
    pub kit: Option<String>,
    /// The step that failed.
    pub phase: Phase,
    /// What happened.
    pub kind: ErrorKind,
}

impl Error {
    /// Attaches the kit the plugin ran for.
    pub fn in_kit(mut self, kit: impl Into<String>) -> Self {
        self.kit = Some(kit.into());
        self
    }

    /// A stable label for metrics and machine-readable output.
    pub fn label(&self) -> &'static str {
        self.kind.label()
    }
}

/// What went wrong inside or around a plugin.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The component's sha256 is not the pinned one.
    #[error("digest mismatch: expected sha256 {expected}, got {actual}")]
    DigestMismatch {
        /// The pin, hex.
        expected: String,
        /// The digest of the bytes given, hex.
        actual: String,
    },
    /// The pin is not 64 hex digits.
    #[error("invalid sha256 pin {0:?}: expected 64 hex digits")]
    InvalidPin(String),
    /// The bytes are not a valid component, or compilation failed.
    #[error("not a loadable WebAssembly component: {0}")]
    Compile(String),
    /// The component imports an interface outside the sandbox's allowed set.
    #[error(
        "forbidden import {import}: plugins may only import kitsync:plugin/host and the WASI interfaces Rust std needs"
    )]
    ForbiddenImport {
        /// The import's full name, e.g. `wasi:sockets/tcp@0.2.3`.
        import: String,
    },
    /// The component exports neither the transformer nor the validator world.
    #[error("component implements neither kitsync:plugin transformer nor validator (exports: {exports})")]
    UnknownWorld {
        /// Its exports, comma-separated.
        exports: String,
    },
    /// The component was built for a version of `kitsync:plugin` this host does not implement.
    #[error(
        "built for {found}, but this kitsync implements kitsync:plugin@{supported} and loads plugins built for {line} only: rebuild the plugin with an SDK for {line}, or run a kitsync that implements its version"
    )]
    IncompatibleContract {
        /// What the component imports, e.g. `kitsync:plugin@0.2.0`.
        found: String,
        /// The host's version of the package.
        supported: &'static str,
        /// The versions the host loads, e.g. `0.1.x`.
        line: String,
    },
    /// A validator was asked to transform or the reverse.
    #[error("plugin is a {actual}, not a {expected}")]
    WrongWorld {
        /// The world the caller needed.
        expected: &'static str,
        /// The world the plugin implements.
        actual: &'static str,
    },
    /// The guest trapped (panic, unreachable, exit, bad memory access).
    #[error("trapped: {message}")]
    Trap {
        /// The trap message with the guest's backtrace if any.
        message: String,
    },
    /// The call ran past its deadline.
    #[error("deadline of {ms} ms exceeded (stopped after {elapsed_ms} ms)")]
    Deadline {
        /// The deadline, in milliseconds.
        ms: u64,
        /// How long the call ran before it was stopped.
        elapsed_ms: u64,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("memory limit of {mib} MiB exceeded")]
    MemoryLimit {
        /// The cap, in MiB.
        mib: u64,
    },
    /// The guest wrote more than the cap to stdout, stderr or the log.
    #[error("{stream} output exceeded the cap of {limit} bytes")]
    OutputLimit {
        /// `stdout`, `stderr` or `log`.
        stream: &'static str,
        /// The cap in bytes.
        limit: usize,
    },
    /// The plugin rejected its configuration.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The plugin could not understand an input object.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The plugin reported an internal failure.
    #[error("plugin failure: {0}")]
    Internal(String),
    /// A returned object is not valid JSON.
    #[error("output object #{index} is not valid JSON: {error}")]
    OutputNotJson {
        /// Position in the returned list.
        index: usize,
        /// The parser's message.
        error: String,
    },
    /// A returned object lacks apiVersion, kind or metadata.name.
    #[error("output object #{index} has no {field}")]
    OutputMissingIdentity {
        /// Position in the returned list.
        index: usize,
        /// The missing field.
        field: crate::object::MissingField,
    },
    /// A returned object's identity record disagrees with its JSON body.
    #[error("output object #{index} claims to be {claimed} but its body says {actual}")]
    OutputIdentityMismatch {
        /// Position in the returned list.
        index: usize,
        /// Identity in the record.
        claimed: String,
        /// Identity in the JSON.
        actual: String,
    },
    /// The plugin's metadata is unusable (e.g. its config schema is not JSON).
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    /// The host could not run the plugin (instance pool exhausted, cache I/O, ...).
    #[error("host failure: {0}")]
    Host(String),
}

impl ErrorKind {
    /// A stable label per variant.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorKind::DigestMismatch { .. } => "digest_mismatch",
            ErrorKind::InvalidPin(_) => "invalid_pin",
            ErrorKind::Compile(_) => "compile",
            ErrorKind::ForbiddenImport { .. } => "forbidden_import",
            ErrorKind::UnknownWorld { .. } => "unknown_world",
            ErrorKind::IncompatibleContract { .. } => "incompatible_contract",
            ErrorKind::WrongWorld { .. } => "wrong_world",
            ErrorKind::Trap { .. } => "trap",
            ErrorKind::Deadline { .. } => "deadline",
            ErrorKind::MemoryLimit { .. } => "memory_limit",
            ErrorKind::OutputLimit { .. } => "output_limit",
            ErrorKind::InvalidConfig(_) => "invalid_config",
            ErrorKind::InvalidInput(_) => "invalid_input",
            ErrorKind::Internal(_) => "internal",
            ErrorKind::OutputNotJson { .. } => "output_not_json",
            ErrorKind::OutputMissingIdentity { .. } => "output_missing_identity",
            ErrorKind::OutputIdentityMismatch { .. } => "output_identity_mismatch",
            ErrorKind::InvalidMetadata(_) => "invalid_metadata",
            ErrorKind::Host(_) => "host",
        }
    }
}
