//! `Error` is every way the store can fail, and `RejectReason` why a single sample was refused.

use std::path::PathBuf;

/// Why one sample of an append was refused (the rest of the batch still goes in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than the newest sample of its series.
    OutOfOrder,
    /// Same timestamp as the newest sample of its series but another value.
    DuplicateTimestamp,
    /// Older than the retention window.
    TooOld,
}

impl RejectReason {
    /// A stable snake_case name, used as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::DuplicateTimestamp => "duplicate_timestamp",
            RejectReason::TooOld => "too_old",
        }
    }

    pub const ALL: [RejectReason; 3] =
        [RejectReason::OutOfOrder, RejectReason::DuplicateTimestamp, RejectReason::TooOld];
}

/// The store's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid regex {regex:?}: {reason}")]
    InvalidRegex { regex: String, reason: String },
    #[error("invalid label set: {0}")]
    InvalidLabels(String),
    /// Entry `index` of an append batch names a series that cannot exist (its labels break
    /// [`crate::validate_labels`], or its id is unknown); nothing of the batch was stored.
    #[error("invalid series at batch entry {index}: {reason}")]
    InvalidSeries { index: usize, reason: String },
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("store is full: {0}")]
    Full(String),
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("store is closed")]
    Closed,
    /// The file system holding the store has no space left for a file the store must allocate
    /// (or its quota is reached). Nothing of the failed write was acknowledged; queries still
    /// work, and writes succeed again once space is freed.
    #[error("no space left for {path}: {source}")]
    NoSpace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store was opened read-only ([`crate::Options::read_only`]), for example because its
    /// volume was full at start: reads work, writes are refused with this reason.
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// Another process holds the data directory's lock file.
    #[error("data directory {path} is locked by another process ({holder})")]
    Locked { path: PathBuf, holder: String },
    /// A deletion window would cut series in two (samples of them on both sides of it); nothing
    /// was deleted ([`crate::Db::delete_series`] removes whole series only).
    #[error(
        "{series} matching series have samples both inside and outside the window, for example {example}; \
         Ringtail deletes whole series only: widen the window or leave start and end out"
    )]
    PartialDeletion { series: usize, example: String },
    /// A check of the store's own invariants failed (a bug): the operation was refused before
    /// it could damage anything.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An I/O error on `path`; "no space" and "quota exceeded" become [`Error::NoSpace`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if is_no_space(&source) {
            Error::NoSpace { path: path.into(), source }
        } else {
            Error::Io { path: path.into(), source }
        }
    }

    /// Whether this error means there is no room to store: the volume (or quota) is full, or a
    /// part of the store's budget is ([`Error::Full`]). Passes when space is freed or series die;
    /// reported as 507 by the HTTP layer.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. } | Error::Full(_))
    }
}

/// ENOSPC or EDQUOT (Linux numbers; `io::ErrorKind::StorageFull` and `QuotaExceeded` where the
/// standard library maps them).
fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28) | Some(122))
}
