//! Calls of one tenant's backfill: create a query, read its status, read its record pages.
//! Its own pacing bucket, so a backfill never takes turns from the live streams' calls.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::Quota;
use reqwest::Method;

use super::config::ApiVersion;
use super::protocol::{self, Query};
use crate::auth::TenantAuth;
use crate::sources::boundary::{BodyLimits, Origin};
use crate::sources::caller::{Caller, Pacer, Reply};
use crate::sources::clock::ServerClock;
use crate::sources::error::ApiError;
use crate::store::BackfillFilters;

pub struct AuditQueryClient {
    pub base: String,
    pub version: ApiVersion,
    caller: Caller,
    creator: Caller,
    /// Pages one query's records may take.
    pub max_pages: u32,
}

impl AuditQueryClient {
    pub fn new(
        http: reqwest::Client,
        auth: Arc<TenantAuth>,
        graph_host: &str,
        version: ApiVersion,
        per_second: u32,
        limits: BodyLimits,
    ) -> AuditQueryClient {
        let base = graph_host.trim_end_matches('/').to_string();
        let clock = Arc::new(ServerClock::default());
        // Creating queries and reading them are one API to the operator.
        let health: Arc<crate::sources::calls::CallHealth> = Default::default();
        let caller = |retry, per_second: u32| Caller {
            http: http.clone(),
            auth: auth.clone(),
            resource: base.clone(),
            origin: Origin::of(&base).expect("the Graph endpoint was validated as https"),
            limit: limits.response,
            clock: clock.clone(),
            // The query service's documented limits are on queries, not calls; stay well inside
            // the global Graph limits.
            limiter: Pacer::new(Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("at least 1"))),
            retry,
            classify: crate::sources::graph::protocol::classify,
            api: "graph-audit-query",
            health: health.clone(),
            answers: Default::default(),
        };
        // A create that fails is not retried on the spot: its window stays pending for the
        // next cycle, and a 429 there means the tenant's query allocation is full, which
        // waiting a second inside the call does not change.
        let once = crate::common::RetryPolicy { max_attempts: Some(0), ..crate::common::RetryPolicy::BACKFILL };
        AuditQueryClient {
            creator: caller(once, per_second),
            caller: caller(crate::common::RetryPolicy::BACKFILL, per_second),
            // A 180-day job pages far more than a live window: allow 100 times the window bound.
            max_pages: limits.pages_per_window.saturating_mul(100),
            base,
            version,
        }
    }

    pub fn health(&self) -> Arc<crate::sources::calls::CallHealth> {
        self.caller.health.clone()
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.caller.clock.now()
    }

    pub async fn create(&self, job: i64, start_ms: i64, end_ms: i64, f: &BackfillFilters) -> Result<Query, ApiError> {
        let body = protocol::create_body(job, start_ms, end_ms, f);
        let reply = self.creator.post_json(&protocol::queries_url(&self.base, self.version), &body).await?;
        protocol::parse_query(&reply.body)
    }

    /// Every query of the tenant, following next links.
    pub async fn list(&self) -> Result<Vec<protocol::Listed>, ApiError> {
        let (mut url, mut out, mut pages) = (protocol::queries_url(&self.base, self.version), Vec::new(), 0);
        loop {
            pages += 1;
            let reply = self.caller.call(Method::GET, &url, &[]).await?;
            let (v, next) = protocol::parse_list(&reply.body)?;
            out.extend(v);
            match next {
                Some(n) if pages < self.max_pages => url = n,
                _ => return Ok(out),
            }
        }
    }

    pub async fn status(&self, id: &str) -> Result<Query, ApiError> {
        let reply = self.caller.call(Method::GET, &protocol::query_url(&self.base, self.version, id), &[]).await?;
        protocol::parse_query(&reply.body)
    }

    /// `url`: the first records URL, or a next link Microsoft returned (checked against the
    /// origin by the caller).
    pub async fn page(&self, url: &str) -> Result<Reply, ApiError> {
        self.caller.call(Method::GET, url, &[]).await
    }

    pub fn first_page(&self, id: &str) -> String {
        protocol::records_url(&self.base, self.version, id)
    }
}
