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
use crate::telemetry::events;

/// A wait Microsoft asks for that is longer than this is left to the stream's driver.
pub const INLINE_WAIT: Duration = Duration::from_secs(60);

/// A rate limit shared fairly: callers get their turn in the order they asked.
///
/// Several streams share one API budget (six report streams share Graph's 5 requests per 10
/// s). governor alone wakes whichever waiter polls first, so one stream can starve for minutes
/// while the others take every turn; a FIFO queue in front of it (tokio's mutex is fair) makes
/// each wait at most one round.
///
/// Once the budget is spent, turns are let out in groups: the first waiter sleeps until
/// `group` turns are due, and the next ones find theirs at once. The rate is the quota's
/// either way; but requests that leave together come back together, and their answers are
/// read, parsed and committed in one wake-up of the daemon instead of one each. Paced one by
/// one, a small blob cost twice the CPU of the same blob in a burst.
pub struct Pacer {
    limiter: DefaultDirectRateLimiter,
    queue: tokio::sync::Mutex<()>,
    /// Turns let out together once the budget is spent (at most the quota's burst).
    group: u32,
    /// The quota's time for one turn.
    period: std::time::Duration,
}

impl Pacer {
    pub fn new(quota: governor::Quota) -> Pacer {
        let group = (quota.burst_size().get() / 2).clamp(1, MAX_GROUP);
        Pacer {
            limiter: governor::RateLimiter::direct(quota),
            queue: tokio::sync::Mutex::new(()),
            group,
            period: quota.replenish_interval(),
        }
    }

    pub async fn wait_turn(&self) {
        use governor::clock::Clock;
        let _turn = self.queue.lock().await;
        // Waited on tokio's timer: governor's `until_ready` sleeps on futures-timer's own
        // thread, which cost a cross-thread wake-up per request.
        while let Err(not_until) = self.limiter.check() {
            let first = not_until.wait_time_from(self.limiter.clock().now());
            tokio::time::sleep(first + self.period * (self.group - 1)).await;
        }
    }
}

/// Turns let out together at most: at 1,800 requests a minute, a group every 0.33 s.
const MAX_GROUP: u32 = 10;

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
    pub limiter: Pacer,
    pub retry: RetryPolicy,
    pub classify: Classify,
    /// Label for metrics and logs.
    pub api: &'static str,
    /// Shared by the client's callers: how its calls go right now, for `status`.
    pub health: Arc<super::calls::CallHealth>,
    /// This caller's answer counters (`ApiAnswered`).
    pub answers: events::ApiAnswers,
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
        self.send(method, url, extra_headers, limit, None).await
    }

    /// A call to a URL the client already parsed (and built on), so it is not parsed again.
    pub async fn call_url(&self, method: Method, url: reqwest::Url, limit: BodyLimit) -> Result<Reply, ApiError> {
        self.send_to(method, url, &[], limit, None).await
    }

    /// A POST with a JSON body (other POSTs send `{}`).
    pub async fn post_json(&self, url: &str, body: &str) -> Result<Reply, ApiError> {
        self.send(Method::POST, url, &[], self.limit, Some(body)).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        extra_headers: &[(&str, &str)],
        limit: BodyLimit,
        body: Option<&str>,
    ) -> Result<Reply, ApiError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ApiError::Fatal {
            code: "bad-url".into(),
            message: format!("Microsoft returned an unusable URL: {e}"),
        })?;
        self.send_to(method, parsed, extra_headers, limit, body).await
    }

    async fn send_to(
        &self,
        method: Method,
        parsed: reqwest::Url,
        extra_headers: &[(&str, &str)],
        limit: BodyLimit,
        body: Option<&str>,
    ) -> Result<Reply, ApiError> {
        if let Err(e) = self.origin.admits(&parsed) {
            events::ApiRefused { tenant: self.auth.tenant(), api: self.api, error: &e, link: true }.emit();
            return Err(e.into());
        }
        let mut refreshed = false;
        loop {
            let attempt = || self.call_once(method.clone(), &parsed, extra_headers, limit, body);
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
                    self.health.failed(e);
                    let throttled = matches!(e, ApiError::Throttled { .. });
                    events::ApiRetrying { tenant: self.auth.tenant(), api: self.api, throttled, error: e, wait: d }
                        .emit();
                })
                .await;
            match r {
                Err(ApiError::Unauthorized(_) | ApiError::Credential(_)) if !refreshed => {
                    // A revoked or expired token, or a rotated secret: reload and fetch a fresh one, once.
                    refreshed = true;
                    self.auth.invalidate();
                }
                other => {
                    match &other {
                        Ok(_) => self.health.succeeded(),
                        Err(e) => self.health.failed(e),
                    }
                    return other;
                }
            }
        }
    }

    async fn call_once(
        &self,
        method: Method,
        url: &reqwest::Url,
        extra_headers: &[(&str, &str)],
        limit: BodyLimit,
        body: Option<&str>,
    ) -> Result<Reply, ApiError> {
        self.limiter.wait_turn().await;
        let _in_flight = self.health.begin(self.api);
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
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.unwrap_or("{}").to_string());
        }
        let resp = req.send().await.map_err(|e| {
            self.answered(None);
            ApiError::Transient(format!("request failed: {}", crate::http::error_chain(&e.without_url())))
        })?;
        self.answered(Some(resp.status().as_u16()));
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

    fn answered(&self, status: Option<u16>) {
        events::ApiAnswered { tenant: self.auth.tenant(), api: self.api, status, counters: &self.answers }.emit();
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
        if let Some(len) = resp.content_length() {
            body.expect(len);
        }
        let refused = |e: BoundaryError| {
            events::ApiRefused { tenant: self.auth.tenant(), api: self.api, error: &e, link: false }.emit();
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

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use std::time::Duration;

    use super::Pacer;

    /// Six callers always asking, one turn per 100 ms: every caller gets its share.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_of_a_shared_budget_gets_its_turn() {
        let quota =
            governor::Quota::with_period(Duration::from_millis(50)).unwrap().allow_burst(NonZeroU32::new(1).unwrap());
        let pacer = Arc::new(Pacer::new(quota));
        let counts: Arc<Vec<std::sync::atomic::AtomicU32>> = Arc::new((0..6).map(|_| Default::default()).collect());
        let stop = tokio_util::sync::CancellationToken::new();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (p, c, s) = (pacer.clone(), counts.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !s.is_cancelled() {
                    p.wait_turn().await;
                    c[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
        let got: Vec<u32> = counts.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).collect();
        assert!(got.iter().all(|n| *n >= 3), "every caller had turns: {got:?}");
        let (lo, hi) = (got.iter().min().unwrap(), got.iter().max().unwrap());
        assert!(hi - lo <= 2, "turns are shared evenly: {got:?}");
    }

    /// Once the budget is spent, turns leave in groups (half the burst), never faster than the
    /// quota: a group's turns follow each other at once, and the groups are a group's worth
    /// of periods apart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spent_budget_lets_turns_out_in_groups_at_the_quota_rate() {
        let period = Duration::from_millis(20);
        let quota = governor::Quota::with_period(period).unwrap().allow_burst(NonZeroU32::new(10).unwrap());
        let pacer = Arc::new(Pacer::new(quota));
        assert_eq!(pacer.group, 5);
        for _ in 0..10 {
            pacer.wait_turn().await; // the burst
        }
        let start = tokio::time::Instant::now();
        let turns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (p, t) = (pacer.clone(), turns.clone());
                tokio::spawn(async move {
                    p.wait_turn().await;
                    t.lock().unwrap().push(tokio::time::Instant::now());
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut at = turns.lock().unwrap().clone();
        at.sort();
        // 20 turns after the burst: never sooner than the quota allows.
        assert!(at[19] - start >= period * 19, "20 turns took {:?}", at[19] - start);
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        // Half a period: generous for a busy machine, and a quota-paced gap is a whole one.
        let together = gaps.iter().filter(|g| **g < period / 2).count();
        let apart = gaps.iter().filter(|g| **g >= period * 3).count();
        assert!(together >= 12 && apart >= 3, "turns in groups of 5: gaps {gaps:?}");
    }
}
