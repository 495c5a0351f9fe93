//! `ProviderError` is why the provider could not answer: a kind the HTTP routes turn into a
//! status (in one place, `http::routes`) and the message the client reads.

/// What went wrong, as far as the client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProviderErrorKind {
    /// No such metric, object or value (404).
    NotFound,
    /// The request cannot be expressed (400).
    BadRequest,
    /// Try again later: a dependency is unavailable or the query ran out of time (503).
    Unavailable,
    /// A fault of the server or its configuration (500).
    Internal,
}

/// Why a request could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ProviderError {
    pub(crate) kind: ProviderErrorKind,
    pub(crate) message: String,
}

impl ProviderError {
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ProviderError { kind: ProviderErrorKind::NotFound, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ProviderError { kind: ProviderErrorKind::BadRequest, message: message.into() }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ProviderError { kind: ProviderErrorKind::Unavailable, message: message.into() }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ProviderError { kind: ProviderErrorKind::Internal, message: message.into() }
    }
}
