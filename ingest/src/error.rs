//! `error` holds the crate's error types: what went wrong with a remote-write request, an
//! exposition page, or a scrape configuration. Each says what and where, so the apiserver can turn
//! it into one clear HTTP status and message.

use crate::wire::WireError;

/// Why a remote-write request was refused. `UnsupportedMediaType` maps to HTTP 415, `Store` to a
/// 5xx, everything else to 400 (and nothing of such a request is stored).
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("unsupported content type {0:?}: send application/x-protobuf (proto=prometheus.WriteRequest or proto=io.prometheus.write.v2.Request)")]
    UnsupportedContentType(String),
    #[error("unsupported content encoding {0:?}: remote-write bodies are snappy block-compressed")]
    UnsupportedContentEncoding(String),
    #[error("invalid snappy body: {0}")]
    Snappy(String),
    #[error("decompressed body of {decompressed_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    DecompressedTooLarge { decompressed_bytes: usize, max_bytes: usize },
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] WireError),
    /// The body holds only fields of the other protocol version than its content type names.
    #[error("the body is a remote-write {body} message but the content type says {content_type}: send the content type of the protocol the body is encoded in")]
    ProtocolMismatch { body: &'static str, content_type: &'static str },
    #[error("series {series_index}: {reason}")]
    InvalidSeries { series_index: usize, reason: String },
    #[error("storing the samples failed: {0}")]
    Store(#[from] tsdb::Error),
}

/// Where and why an exposition page failed to parse. Lines and columns count from 1; the column
/// counts bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A scrape configuration that cannot be used, naming the job and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid scrape configuration: {0}")]
    Yaml(String),
    #[error("scrape config {job:?}: {message}")]
    Invalid { job: String, message: String },
    #[error("relabel config: invalid regex {regex:?}: {reason}")]
    Regex { regex: String, reason: String },
    #[error("relabel config: {0}")]
    Relabel(String),
    #[error("scrape config {job:?}: cannot build the HTTP client: {message}")]
    Client { job: String, message: String },
    #[error("remote_write {destination:?}: {message}")]
    Forward { destination: String, message: String },
}

/// reqwest's error with its causes (its top-level message hides the one that says what happened:
/// connection refused, a certificate, a timeout); `timed_out` names a timeout.
pub(crate) fn describe_reqwest(error: &reqwest::Error, timed_out: &str) -> String {
    let mut message = if error.is_timeout() { timed_out.to_string() } else { error.to_string() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
