//! Calls for one tenant's Graph and ARM streams, paced per API bucket so steady state never
//! meets a 429. Every call goes through the shared `Caller`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::Quota;
use reqwest::Method;

use super::protocol;
use super::spec::{Bucket, Host};
use crate::auth::TenantAuth;
use crate::sources::boundary::{BodyLimits, Origin};
use crate::sources::caller::{Caller, Pacer, Reply};
use crate::sources::clock::ServerClock;
use crate::sources::error::ApiError;

pub struct GraphClient {
    pub graph_base: String,
    pub arm_base: String,
    reports: Caller,
    graph: Caller,
    message_trace: Caller,
    arm: Caller,
    /// Pages one window may take.
    pub max_pages: u32,
}

/// At most `n` calls in any `window`: one every `window / n`, no burst.
fn spaced(n: u32, window: Duration) -> Quota {
    let period = window / n.max(1);
    Quota::with_period(period).expect("non-zero period").allow_burst(NonZeroU32::new(1).expect("1"))
}

impl GraphClient {
    /// `reports_per_10s`: requests per 10 s for `auditLogs/*` (Microsoft: 5 per app per tenant).
    pub fn new(
        http: reqwest::Client,
        auth: Arc<TenantAuth>,
        graph_host: &str,
        arm_host: &str,
        reports_per_10s: u32,
        limits: BodyLimits,
    ) -> GraphClient {
        let graph_base = graph_host.trim_end_matches('/').to_string();
        let arm_base = arm_host.trim_end_matches('/').to_string();
        let clock = Arc::new(ServerClock::default());
        let caller = |resource: &str, quota: Quota, api: &'static str| Caller {
            http: http.clone(),
            auth: auth.clone(),
            resource: resource.to_string(),
            origin: Origin::of(resource).expect("Graph and ARM endpoints were validated as https"),
            limit: limits.response,
            clock: clock.clone(),
            limiter: Pacer::new(quota),
            retry: crate::common::RetryPolicy::SOURCE,
            classify: protocol::classify,
            api,
            health: Default::default(),
            answers: Default::default(),
        };
        GraphClient {
            max_pages: limits.pages_per_window,
            reports: caller(&graph_base, spaced(reports_per_10s, Duration::from_secs(10)), "graph-reports"),
            graph: caller(&graph_base, Quota::per_second(NonZeroU32::new(10).expect("10")), "graph"),
            // Microsoft: 100 per 5 minutes per tenant, shared by trace and detail calls; keep 10 spare.
            message_trace: caller(&graph_base, spaced(90, Duration::from_secs(300)), "graph-message-trace"),
            // ARM refills 25 reads/s into a bucket of 250; stay well inside it.
            arm: caller(
                &arm_base,
                Quota::per_second(NonZeroU32::new(10).expect("10")).allow_burst(NonZeroU32::new(50).expect("50")),
                "arm",
            ),
            graph_base,
            arm_base,
        }
    }

    pub fn base(&self, host: Host) -> &str {
        match host {
            Host::Graph => &self.graph_base,
            Host::Arm => &self.arm_base,
        }
    }

    fn caller(&self, bucket: Bucket) -> &Caller {
        match bucket {
            Bucket::Reports => &self.reports,
            Bucket::Graph => &self.graph,
            Bucket::MessageTrace => &self.message_trace,
            Bucket::Arm => &self.arm,
        }
    }

    pub fn health(&self, bucket: Bucket) -> Arc<crate::sources::calls::CallHealth> {
        self.caller(bucket).health.clone()
    }

    pub fn clock(&self, bucket: Bucket) -> &ServerClock {
        &self.caller(bucket).clock
    }

    pub async fn get(&self, bucket: Bucket, url: &str) -> Result<Reply, ApiError> {
        self.caller(bucket).call(Method::GET, url, &[]).await
    }
}
