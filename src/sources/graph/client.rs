//! Graph calls for one tenant, paced per API bucket so steady state never meets a 429.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use reqwest::Method;

use super::protocol;
use super::spec::Bucket;
use crate::auth::TenantAuth;
use crate::sources::caller::{Caller, Reply};
use crate::sources::clock::ServerClock;
use crate::sources::error::ApiError;

pub struct GraphClient {
    pub base: String,
    reports: Caller,
}

impl GraphClient {
    /// `reports_per_10s`: requests per 10 s for `auditLogs/*` (Microsoft: 5 per app per tenant).
    pub fn new(
        http: reqwest::Client,
        auth: Arc<TenantAuth>,
        graph_host: &str,
        reports_per_10s: u32,
    ) -> GraphClient {
        // One request per (10 s / n), no burst: never more than n in any 10-second window.
        let period = Duration::from_millis(10_000 / u64::from(reports_per_10s.max(1)));
        let quota = Quota::with_period(period)
            .expect("non-zero period")
            .allow_burst(NonZeroU32::new(1).expect("1"));
        GraphClient {
            base: graph_host.trim_end_matches('/').to_string(),
            reports: Caller {
                http,
                auth,
                resource: graph_host.trim_end_matches('/').to_string(),
                clock: Arc::new(ServerClock::default()),
                limiter: RateLimiter::direct(quota),
                backoff: Caller::default_backoff(),
                classify: protocol::classify,
                api: "graph-reports",
            },
        }
    }

    pub fn clock(&self, bucket: Bucket) -> &ServerClock {
        match bucket {
            Bucket::Reports => &self.reports.clock,
        }
    }

    pub async fn get(&self, bucket: Bucket, url: &str) -> Result<Reply, ApiError> {
        let caller = match bucket {
            Bucket::Reports => &self.reports,
        };
        caller.call(Method::GET, url, &[]).await
    }
}
