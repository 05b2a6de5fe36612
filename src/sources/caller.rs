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
    pub clock: Arc<ServerClock>,
    pub limiter: DefaultDirectRateLimiter,
    pub retry: RetryPolicy,
    pub classify: Classify,
    /// Label for metrics and logs.
    pub api: &'static str,
}

impl Caller {
    pub async fn call(&self, method: Method, url: &str, extra_headers: &[(&str, &str)]) -> Result<Reply, ApiError> {
        let mut refreshed = false;
        loop {
            let attempt = || self.call_once(method.clone(), url, extra_headers);
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

    async fn call_once(&self, method: Method, url: &str, extra_headers: &[(&str, &str)]) -> Result<Reply, ApiError> {
        self.limiter.until_ready().await;
        let token = self.auth.token(&self.resource).await.map_err(|e| {
            if e.is_rejection() { ApiError::Credential(e.to_string()) } else { ApiError::Transient(e.to_string()) }
        })?;
        let mut req = self.http.request(method.clone(), url).bearer_auth(token);
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
        let body = resp.bytes().await.map_err(|e| {
            ApiError::Transient(format!("response body interrupted: {}", crate::http::error_chain(&e.without_url())))
        })?;
        if status.is_success() {
            Ok(Reply { body: body.into(), headers })
        } else {
            Err((self.classify)(status.as_u16(), &body, retry_after(&headers)))
        }
    }
}

/// Parses `Retry-After` as seconds (the only form Microsoft sends).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}
