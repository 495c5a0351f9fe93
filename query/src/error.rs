//! `QueryError` is why a query failed, `ParseError` why its text did not parse, and
//! `SelectorError`/`ParamError` why an API parameter (series selector, time, duration) was
//! refused. A leaf module: callers map these to their own statuses and wording.

/// Why a query did not parse: byte offset and message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub pos: usize,
    pub message: String,
}

/// Why a query failed. `Parse` maps to HTTP 400 (`bad_data`), `Execution` and `TooManySamples` to
/// 422, `Timeout` to 503, `Cancelled` to 499, `Storage` to 500 (as Prometheus's API does).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("parse error at char {position}: {message}")]
    Parse { position: usize, message: String },
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The query's [`crate::CancelHandle`] was fired (its client went away).
    #[error("query was canceled in {0}")]
    Cancelled(&'static str),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    #[error("storage error: {0}")]
    Storage(#[from] tsdb::Error),
}

impl QueryError {
    /// The message without position decoration (what Prometheus's test scripts compare).
    pub fn message(&self) -> String {
        match self {
            QueryError::Parse { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl From<ParseError> for QueryError {
    fn from(e: ParseError) -> Self {
        QueryError::Parse { position: e.pos, message: e.message }
    }
}

/// Why a text is not a series selector (see [`crate::parse_selector`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorError {
    /// The text is not PromQL.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The text is PromQL but not a bare vector selector (a function, a range, an offset, …).
    #[error("not a series selector")]
    NotASelector,
}

/// Why a time or duration parameter was refused; the messages are Prometheus's API wording.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("cannot parse {text:?} to a valid timestamp")]
    Time { text: String },
    #[error("cannot parse {text:?} to a valid duration")]
    Duration { text: String },
    #[error("cannot parse {text:?} to a valid duration. It overflows int64")]
    DurationOverflow { text: String },
}
