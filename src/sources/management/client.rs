//! The Management Activity API's calls. Every request goes through the shared `Caller`
//! (pacing, token, retries, clock); this file adds `PublisherIdentifier` to every URL, blob
//! downloads and followed `NextPageUri`s included, and bounds blob downloads per tenant.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::Quota;
use reqwest::{Method, Url};

use super::protocol::{self, ApiError, ContentItem, Subscription};
use crate::auth::TenantAuth;
use crate::sources::boundary::{BodyLimit, BodyLimits, Origin};
use crate::sources::caller::{Caller, Pacer};
use crate::sources::clock::ServerClock;

pub struct ManagementClient {
    caller: Caller,
    /// `https://{host}/api/v1.0/{tenant}/activity/feed`
    base: String,
    publisher: String,
    /// Blob downloads in flight for the whole tenant: bounds memory and load whatever the
    /// number of streams.
    pub fetch_slots: tokio::sync::Semaphore,
    blob_limit: BodyLimit,
    /// Pages one listing window may take.
    pub max_pages: u32,
}

impl ManagementClient {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        http: reqwest::Client,
        auth: Arc<TenantAuth>,
        host: &str,
        resource: &str,
        tenant_id: &str,
        publisher: &str,
        requests_per_minute: u32,
        fetch_concurrency: usize,
        limits: BodyLimits,
    ) -> ManagementClient {
        let rpm = NonZeroU32::new(requests_per_minute.max(1)).expect("non-zero");
        ManagementClient {
            blob_limit: limits.blob,
            max_pages: limits.pages_per_window,
            caller: Caller {
                http,
                auth,
                resource: resource.to_string(),
                origin: Origin::of(host).expect("the management endpoint was validated as https"),
                limit: limits.response,
                clock: Arc::new(ServerClock::default()),
                limiter: Pacer::new(Quota::per_minute(rpm).allow_burst(NonZeroU32::new(20).expect("20"))),
                retry: crate::common::RetryPolicy::SOURCE,
                classify: protocol::classify,
                api: "management",
                health: Default::default(),
                answers: Default::default(),
            },
            base: format!("{}/api/v1.0/{}/activity/feed", host.trim_end_matches('/'), tenant_id),
            publisher: publisher.to_string(),
            fetch_slots: tokio::sync::Semaphore::new(fetch_concurrency.max(1)),
        }
    }

    pub fn clock(&self) -> &ServerClock {
        &self.caller.clock
    }

    pub fn health(&self) -> Arc<crate::sources::calls::CallHealth> {
        self.caller.health.clone()
    }

    pub fn content_url(&self, content_type: &str, start: &str, end: &str) -> String {
        let mut u = Url::parse(&format!("{}/subscriptions/content", self.base)).expect("base URL was validated");
        u.query_pairs_mut()
            .append_pair("contentType", content_type)
            .append_pair("startTime", start)
            .append_pair("endTime", end);
        u.to_string()
    }

    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, ApiError> {
        let r = self.call(Method::GET, &format!("{}/subscriptions/list", self.base)).await?;
        serde_json::from_slice(&r.body).map_err(|e| ApiError::Transient(format!("subscription list unreadable: {e}")))
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
    pub async fn list_page(&self, url: &str) -> Result<(Vec<ContentItem>, Option<String>), ApiError> {
        let r = self.call(Method::GET, url).await?;
        let items = protocol::parse_listing(&r.body)?;
        Ok((items, protocol::next_page(&r.headers)))
    }

    pub async fn fetch_blob(&self, content_uri: &str) -> Result<Vec<u8>, ApiError> {
        let url = self.with_publisher(content_uri)?;
        Ok(self.caller.call_url(Method::GET, url, self.blob_limit).await?.body)
    }

    async fn call(&self, method: Method, url: &str) -> Result<crate::sources::caller::Reply, ApiError> {
        let url = self.with_publisher(url)?;
        self.caller.call_url(method, url, self.caller.limit).await
    }

    /// Adds `PublisherIdentifier` unless the URL (e.g. a NextPageUri) already carries it.
    fn with_publisher(&self, url: &str) -> Result<Url, ApiError> {
        let mut u = Url::parse(url).map_err(|e| ApiError::Fatal {
            code: "bad-url".into(),
            message: format!("Microsoft returned an unusable URL {url:?}: {e}"),
        })?;
        if !u.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("PublisherIdentifier")) {
            u.query_pairs_mut().append_pair("PublisherIdentifier", &self.publisher);
        }
        Ok(u)
    }
}
