//! How a failed API call must be handled, shared by every source.

use std::time::Duration;

/// How a failed call must be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// AF429 (arrives as HTTP 403) or HTTP 429: back off, honouring Retry-After.
    #[error("throttled by Microsoft ({code})")]
    Throttled { code: String, retry_after: Option<Duration> },
    /// 5xx, AF50000, timeouts, connection errors: retry with backoff.
    #[error("transient error: {0}")]
    Transient(String),
    /// 401: refresh the token once.
    #[error("unauthorized (401): {0}")]
    Unauthorized(String),
    /// The authority refused to issue a token (wrong secret, app deleted, no consent).
    #[error("token request rejected: {0}")]
    Credential(String),
    /// AF20022/AF20023: (re)start the subscription, then retry.
    #[error("subscription not enabled ({code}): {message}")]
    NoSubscription { code: String, message: String },
    /// AF20030/AF20055: the window is outside what the server accepts.
    #[error("listing window rejected ({code}): {message}")]
    BadWindow { code: String, message: String },
    /// AF20051 (content older than 7 days) or AF20050 (not found): counted as expired.
    #[error("content no longer available ({code}): {message}")]
    Gone { code: String, message: String },
    /// AF20031: the nextPage token was refused.
    #[error("next page refused ({code}): {message}")]
    BadPage { code: String, message: String },
    /// The tenant lacks a licence or the app a permission: the stream is unavailable, others go on.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A 4xx the API does not document for this call (a skip token that expired, a path that
    /// moved): the page or window is tried again before the stream is declared failed.
    #[error("HTTP {status} {code}: {message}")]
    Rejected { status: u16, code: String, message: String },
    /// Anything that retrying cannot fix soon: the stream fails and is tried again later.
    #[error("fatal API error {code}: {message}")]
    Fatal { code: String, message: String },
    /// The answer crossed the trust boundary: a link to another host, or a body over its cap.
    #[error(transparent)]
    Boundary(#[from] super::boundary::BoundaryError),
}

impl ApiError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ApiError::Throttled { .. } | ApiError::Transient(_))
    }

    /// What kind of trouble this is, for `auditkeeper_stream_problem`; `None` for answers
    /// the protocol expects and handles (no subscription yet, a window or page to redo,
    /// content gone).
    pub fn problem(&self) -> Option<&'static str> {
        match self {
            ApiError::Throttled { .. } => Some("throttled"),
            ApiError::Transient(_) => Some("error"),
            ApiError::Unauthorized(_) => Some("unauthorized"),
            ApiError::Credential(_) => Some("credential"),
            ApiError::Unavailable(_) => Some("unavailable"),
            ApiError::Rejected { .. } => Some("rejected"),
            ApiError::Fatal { .. } => Some("fatal"),
            ApiError::Boundary(_) => Some("boundary"),
            ApiError::NoSubscription { .. }
            | ApiError::BadWindow { .. }
            | ApiError::Gone { .. }
            | ApiError::BadPage { .. } => None,
        }
    }
}

#[derive(serde::Deserialize)]
struct ErrBody {
    error: ErrInner,
}

#[derive(serde::Deserialize)]
struct ErrInner {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// `(code, message)` from `{"error":{"code":…,"message":…}}`, the error shape every API here uses.
pub fn parse_error_body(body: &[u8]) -> Option<(String, String)> {
    serde_json::from_slice::<ErrBody>(body).ok().map(|b| (b.error.code, b.error.message))
}
