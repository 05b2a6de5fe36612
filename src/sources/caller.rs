//! One HTTP call to a Microsoft API, done right: pacing, token, retries with exponential backoff
//! and jitter (honouring `Retry-After`), one token refresh on 401, the server clock from `Date`.
//! Every source client sends through a `Caller`; only the error classification differs per API.
//!
//! A `Retry-After` longer than a minute is not slept here: the call returns the throttling
//! error, and the stream's driver waits (capped) with the stream shown as throttled until then.

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use governor::DefaultDirectRateLimiter;
use reqwest::Method;

use super::boundary::{BodyLimit, BoundaryError, CappedBody, Origin};
use super::clock::ServerClock;
use super::error::ApiError;
use crate::auth::TenantAuth;
use crate::common::RetryPolicy;

/// A wait Microsoft asks for that is longer than this is left to the stream's driver.
pub const INLINE_WAIT: Duration = Duration::from_secs(60);

pub struct Reply {
    pub body: Vec<u8>,
    pub headers: reqwest::header::HeaderMap,
}

/// Turns a non-success response into an `ApiError` (status, body, Retry-After).
pub type Classify = fn(u16, &[u8], Option<Duration>) -> ApiError;

pub struct Caller {
    pub http: reqwest::Client,
    pub auth: Arc<TenantAuth>,
    /// Token audience, e.g. `https://manage.office.com`.
    pub resource: String,
    /// The configured endpoint: the only place the token may go.
    pub origin: Origin,
    /// Caps on an ordinary response body (blob downloads pass their own).
    pub limit: BodyLimit,
    pub clock: Arc<ServerClock>,
    pub limiter: DefaultDirectRateLimiter,
    pub retry: RetryPolicy,
    pub classify: Classify,
    /// Label for metrics and logs.
    pub api: &'static str,
}

impl Caller {
    pub async fn call(&self, method: Method, url: &str, extra_headers: &[(&str, &str)]) -> Result<Reply, ApiError> {
        self.call_limited(method, url, extra_headers, self.limit).await
    }

    pub async fn call_limited(
        &self,
        method: Method,
        url: &str,
        extra_headers: &[(&str, &str)],
        limit: BodyLimit,
    ) -> Result<Reply, ApiError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ApiError::Fatal {
            code: "bad-url".into(),
            message: format!("Microsoft returned an unusable URL: {e}"),
        })?;
        if let Err(e) = self.origin.admits(&parsed) {
            metrics::counter!("auditkeeper_source_links_refused_total", "api" => self.api).increment(1);
            tracing::error!(api = self.api, error = %e, "refused a link outside the configured endpoint; a tampered response or a misbehaving proxy?");
            return Err(e.into());
        }
        let mut refreshed = false;
        loop {
            let attempt = || self.call_once(method.clone(), &parsed, extra_headers, limit);
            let r = attempt
                .retry(self.retry.backoff())
                .when(ApiError::is_retryable)
                .adjust(|e, d| match (e, d) {
                    (ApiError::Throttled { retry_after: Some(ra), .. }, _) if *ra > INLINE_WAIT => None,
                    (ApiError::Throttled { retry_after: Some(ra), .. }, Some(d)) => {
                        Some(self.retry.delay(d, Some(*ra)))
                    }
                    (_, d) => d,
                })
                .notify(|e, d| {
                    metrics::counter!("auditkeeper_source_retries_total", "api" => self.api).increment(1);
                    if matches!(e, ApiError::Throttled { .. }) {
                        metrics::counter!("auditkeeper_source_throttled_total", "api" => self.api).increment(1);
                    }
                    // Throttling is routine and paced for; anything else is worth an operator's eye
                    // before the retries run out and the stream records the error in status.
                    if matches!(e, ApiError::Throttled { .. }) {
                        tracing::debug!(api = self.api, error = %e, retry_in = ?d, "throttled; retrying");
                    } else {
                        tracing::warn!(api = self.api, error = %e, retry_in = ?d, "call failed; retrying");
                    }
                })
                .await;
            match r {
                Err(ApiError::Unauthorized(_) | ApiError::Credential(_)) if !refreshed => {
                    // A revoked or expired token, or a rotated secret: reload and fetch a fresh one, once.
                    refreshed = true;
                    self.auth.invalidate();
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        method: Method,
        url: &reqwest::Url,
        extra_headers: &[(&str, &str)],
        limit: BodyLimit,
    ) -> Result<Reply, ApiError> {
        self.limiter.until_ready().await;
        let token = self.auth.token(&self.resource).await.map_err(|e| {
            if e.is_rejection() { ApiError::Credential(e.to_string()) } else { ApiError::Transient(e.to_string()) }
        })?;
        // Decoded here, not by the client, so the size and ratio of what arrives are known.
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip");
        for (k, v) in extra_headers {
            req = req.header(*k, *v);
        }
        if method == Method::POST {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body("{}");
        }
        let resp = req.send().await.map_err(|e| {
            ApiError::Transient(format!("request failed: {}", crate::http::error_chain(&e.without_url())))
        })?;
        if let Some(d) = resp.headers().get(reqwest::header::DATE).and_then(|v| v.to_str().ok()) {
            self.clock.observe(d);
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = self.read_body(resp, limit).await?;
        if status.is_success() {
            Ok(Reply { body, headers })
        } else {
            Err((self.classify)(status.as_u16(), &body, retry_after(&headers)))
        }
    }

    /// Reads the body chunk by chunk under `limit`; a body over it is refused, never buffered whole.
    async fn read_body(&self, mut resp: reqwest::Response, limit: BodyLimit) -> Result<Vec<u8>, ApiError> {
        let encoding = resp.headers().get(reqwest::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
        let gzip = match encoding.map(|e| e.trim().to_ascii_lowercase()) {
            None => false,
            Some(e) if e == "identity" => false,
            Some(e) if e == "gzip" || e == "x-gzip" => true,
            Some(other) => {
                return Err(ApiError::Transient(format!("{}: unsupported Content-Encoding {other:?}", limit.what)));
            }
        };
        let mut body = CappedBody::new(limit, gzip);
        let refused = |e: BoundaryError| {
            metrics::counter!("auditkeeper_source_bodies_refused_total", "api" => self.api).increment(1);
            tracing::error!(api = self.api, error = %e, "refused a response body");
            ApiError::Boundary(e)
        };
        loop {
            let chunk = resp.chunk().await.map_err(|e| {
                ApiError::Transient(format!(
                    "response body interrupted: {}",
                    crate::http::error_chain(&e.without_url())
                ))
            })?;
            match chunk {
                Some(c) => body.push(&c).map_err(refused)?,
                None => {
                    return body.finish().map_err(|e| match e {
                        // A body cut short is a transport problem, retried as such.
                        BoundaryError::Gzip { .. } => ApiError::Transient(e.to_string()),
                        e => refused(e),
                    });
                }
            }
        }
    }
}

/// Parses `Retry-After` as seconds (the only form Microsoft sends).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}
