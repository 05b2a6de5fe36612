//! HTTP calls to the Management Activity API: token, PublisherIdentifier, pacing, retries.
//!
//! Every call goes through `call`, which adds `PublisherIdentifier` (blob downloads included),
//! paces requests per tenant, retries throttling and transient errors with exponential backoff
//! and jitter (honouring `Retry-After`), refreshes the token once on 401, and feeds the server's
//! `Date` header to the clock.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, Url};

use super::protocol::{self, ApiError, ContentItem, Subscription};
use crate::auth::TenantAuth;
use crate::sources::clock::ServerClock;

pub struct Reply {
    pub body: Vec<u8>,
    pub headers: reqwest::header::HeaderMap,
}

pub struct ManagementClient {
    http: reqwest::Client,
    auth: Arc<TenantAuth>,
    /// `https://{host}/api/v1.0/{tenant}/activity/feed`
    base: String,
    resource: String,
    publisher: String,
    pub clock: Arc<ServerClock>,
    limiter: DefaultDirectRateLimiter,
    backoff: ExponentialBuilder,
    /// Blob downloads in flight for the whole tenant: bounds memory and load whatever the
    /// number of streams.
    pub fetch_slots: tokio::sync::Semaphore,
}

impl ManagementClient {
    pub fn new(
        http: reqwest::Client,
        auth: Arc<TenantAuth>,
        host: &str,
        resource: &str,
        tenant_id: &str,
        publisher: &str,
        requests_per_minute: u32,
        fetch_concurrency: usize,
    ) -> ManagementClient {
        let rpm = NonZeroU32::new(requests_per_minute.max(1)).expect("non-zero");
        ManagementClient {
            http,
            auth,
            base: format!(
                "{}/api/v1.0/{}/activity/feed",
                host.trim_end_matches('/'),
                tenant_id
            ),
            resource: resource.to_string(),
            publisher: publisher.to_string(),
            clock: Arc::new(ServerClock::default()),
            limiter: RateLimiter::direct(
                Quota::per_minute(rpm).allow_burst(NonZeroU32::new(20).expect("20")),
            ),
            backoff: ExponentialBuilder::default()
                .with_jitter()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(60))
                .with_max_times(8),
            fetch_slots: tokio::sync::Semaphore::new(fetch_concurrency.max(1)),
        }
    }

    pub fn content_url(&self, content_type: &str, start: &str, end: &str) -> String {
        let mut u = Url::parse(&format!("{}/subscriptions/content", self.base))
            .expect("base URL was validated");
        u.query_pairs_mut()
            .append_pair("contentType", content_type)
            .append_pair("startTime", start)
            .append_pair("endTime", end);
        u.to_string()
    }

    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, ApiError> {
        let r = self
            .call(Method::GET, &format!("{}/subscriptions/list", self.base))
            .await?;
        serde_json::from_slice(&r.body)
            .map_err(|e| ApiError::Transient(format!("subscription list unreadable: {e}")))
    }

    pub async fn start_subscription(&self, content_type: &str) -> Result<(), ApiError> {
        let mut u = Url::parse(&format!("{}/subscriptions/start", self.base)).expect("valid");
        u.query_pairs_mut().append_pair("contentType", content_type);
        match self.call(Method::POST, u.as_str()).await {
            Ok(_) => Ok(()),
            // "Already enabled" is success.
            Err(ApiError::Fatal { code, .. }) if code == "AF20024" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One page of a content listing, and the next page's URL (followed verbatim).
    pub async fn list_page(
        &self,
        url: &str,
    ) -> Result<(Vec<ContentItem>, Option<String>), ApiError> {
        let r = self.call(Method::GET, url).await?;
        let items = protocol::parse_listing(&r.body).map_err(ApiError::Transient)?;
        Ok((items, protocol::next_page(&r.headers)))
    }

    pub async fn fetch_blob(&self, content_uri: &str) -> Result<Vec<u8>, ApiError> {
        Ok(self.call(Method::GET, content_uri).await?.body)
    }

    /// Adds `PublisherIdentifier` unless the URL (e.g. a NextPageUri) already carries it.
    fn with_publisher(&self, url: &str) -> Result<String, ApiError> {
        let mut u = Url::parse(url).map_err(|e| ApiError::Fatal {
            code: "bad-url".into(),
            message: format!("Microsoft returned an unusable URL {url:?}: {e}"),
        })?;
        if !u
            .query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("PublisherIdentifier"))
        {
            u.query_pairs_mut()
                .append_pair("PublisherIdentifier", &self.publisher);
        }
        Ok(u.to_string())
    }

    async fn call(&self, method: Method, url: &str) -> Result<Reply, ApiError> {
        let url = self.with_publisher(url)?;
        let mut refreshed = false;
        loop {
            let attempt = || self.call_once(method.clone(), &url);
            let r = attempt
                .retry(self.backoff)
                .when(ApiError::is_retryable)
                .adjust(|e, d| match (e, d) {
                    (ApiError::Throttled { retry_after: Some(ra), .. }, Some(d)) => Some((*ra).max(d)),
                    (_, d) => d,
                })
                .notify(|e, d| {
                    metrics::counter!("auditkeeper_source_retries_total", "api" => "management").increment(1);
                    if matches!(e, ApiError::Throttled { .. }) {
                        metrics::counter!("auditkeeper_source_throttled_total", "api" => "management").increment(1);
                    }
                    tracing::debug!(error = %e, retry_in = ?d, "retrying Management API call");
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

    async fn call_once(&self, method: Method, url: &str) -> Result<Reply, ApiError> {
        self.limiter.until_ready().await;
        let token = self.auth.token(&self.resource).await.map_err(|e| {
            if e.is_rejection() {
                ApiError::Credential(e.to_string())
            } else {
                ApiError::Transient(e.to_string())
            }
        })?;
        let mut req = self.http.request(method.clone(), url).bearer_auth(token);
        if method == Method::POST {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{}");
        }
        let resp = req.send().await.map_err(|e| {
            ApiError::Transient(format!(
                "request failed: {}",
                crate::http::error_chain(&e.without_url())
            ))
        })?;
        if let Some(d) = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
        {
            self.clock.observe(d);
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            ApiError::Transient(format!(
                "response body interrupted: {}",
                crate::http::error_chain(&e.without_url())
            ))
        })?;
        if status.is_success() {
            Ok(Reply {
                body: body.into(),
                headers,
            })
        } else {
            Err(protocol::classify(
                status.as_u16(),
                &body,
                protocol::retry_after(&headers),
            ))
        }
    }
}
