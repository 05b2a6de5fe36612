//! A tenant's backfill as a `Source`: each cycle moves every open window of its jobs one step.
//!
//! A window is `pending` (no query), `running` (a query Microsoft is working on, polled with
//! back-off), then read page by page into ingest, and `done` with its last page. A query that
//! Microsoft truncated (`isRecordCountLimitExceeded`, or as many records as `record_limit` where
//! the version does not say) is split in halves and re-run; so is a window whose pages keep
//! failing (users report HTTP 500 after about 20,000 records, and malformed pages). Only a
//! window already at `min_window` that still fails is given up, as `failed`, shown in `status`;
//! one Microsoft still truncates there is `failed` too, with the records it returned kept.
//!
//! INVARIANT: at most `max_active_queries` queries run, and at most `max_submissions_per_day`
//! are created in any 24 h (counted in the store, so a restart does not reset the count).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::client::AuditQueryClient;
use super::config::AuditQuerySettings;
use super::protocol::{self, Query, QueryStatus, fmt_time};
use crate::pipeline::{PipelineError, StreamHandle};
use crate::sources::driver::{Outcome, Source};
use crate::sources::error::ApiError;
use crate::sources::record::ParsedBlob;
use crate::store::{BackfillWindow, Checkpoint, NewBackfill, WindowState};
use crate::telemetry::events;

/// Queries created for one window before a failing window is split (or, at the smallest
/// size, given up).
const ATTEMPTS: i64 = 3;
/// Fetches of one page that does not parse before the window is set back.
const PAGE_TRIES: u32 = 3;

pub struct AuditQueryStream {
    client: Arc<AuditQueryClient>,
    handle: StreamHandle,
    settings: AuditQuerySettings,
    /// Per running query: when to look at it next, and the wait after that.
    polls: HashMap<String, (Instant, Duration)>,
    first_start_checked: bool,
    /// Queries at Microsoft were matched against pending windows since this process started.
    orphans_checked: bool,
    /// After a 429 on create: the queries that were running then, taken as the tenant's real
    /// allocation (Microsoft does not publish it) until `LEARNED_FOR` has passed.
    learned_cap: Option<(u32, Instant)>,
}

/// How long a limit learned from a 429 holds before the configured one is tried again.
const LEARNED_FOR: Duration = Duration::from_secs(900);

/// Why `submit` held pending windows back.
enum Held {
    /// The daily submission budget is spent.
    Daily(String),
    /// Microsoft answered 429 to a new query.
    Throttled { after: Option<Duration>, why: String },
}

/// What one step did to a running window.
enum Step {
    /// Still running at Microsoft.
    Waiting,
    /// Done, split, retried or failed: no longer holds a query.
    Released,
}

fn store_retry(e: PipelineError) -> Outcome {
    Outcome::Retry { after: None, why: format!("backfill state: {e}") }
}

impl AuditQueryStream {
    pub fn new(client: Arc<AuditQueryClient>, handle: StreamHandle, settings: AuditQuerySettings) -> Self {
        AuditQueryStream {
            client,
            handle,
            settings,
            polls: HashMap::new(),
            first_start_checked: false,
            orphans_checked: false,
            learned_cap: None,
        }
    }

    fn tenant(&self) -> &str {
        &self.handle.key.tenant
    }

    fn outcome(&self, e: ApiError) -> Outcome {
        Outcome::from_error(e, |e| match e {
            ApiError::Unavailable(_) | ApiError::Fatal { .. } => {
                "; backfill needs AuditLogsQuery.Read.All (or the per-workload AuditLogsQuery-*.Read.All), admin consent, and auditing on in Purview"
            }
            _ => "",
        })
    }

    async fn first_start(&mut self) -> Result<(), PipelineError> {
        if self.first_start_checked || self.settings.backfill_days == 0 {
            self.first_start_checked = true;
            return Ok(());
        }
        let until = self.client.now().timestamp_millis();
        let job = NewBackfill {
            tenant: self.tenant().to_string(),
            since_ms: until - i64::from(self.settings.backfill_days) * 86_400_000,
            until_ms: until,
            window_ms: self.settings.window.as_millis() as i64,
            filters: self.settings.filters.clone(),
            origin: "backfill_days",
        };
        if let Some(id) = self.handle.ensure_first_backfill(job).await? {
            tracing::info!(tenant = %self.tenant(), job = id, days = self.settings.backfill_days,
                "first start: backfill job registered from backfill_days");
        }
        self.first_start_checked = true;
        Ok(())
    }

    fn due(&self, id: &str) -> bool {
        self.polls.get(id).is_none_or(|(at, _)| Instant::now() >= *at)
    }

    fn back_off(&mut self, id: &str) {
        let first = self.settings.poll_interval;
        let cap = self.settings.max_status_interval;
        let e = self.polls.entry(id.to_string()).or_insert((Instant::now(), first));
        *e = (Instant::now() + e.1, (e.1 * 2).min(cap));
    }

    /// A window that cannot be read as it is: halve it when `split_first` (or after its
    /// attempts), else run a new query; at the smallest size after its attempts, give it up.
    async fn set_back(&mut self, w: &BackfillWindow, why: &str, split_first: bool) -> Result<Step, Outcome> {
        if let Some(id) = &w.query_id {
            self.polls.remove(id);
        }
        let (from, to) = (fmt_time(w.start_ms), fmt_time(w.end_ms));
        let mid = protocol::split_point(w.start_ms, w.end_ms, self.settings.min_window.as_millis() as i64);
        let ev = |what| events::BackfillWindowSetBack {
            tenant: &self.handle.key.tenant,
            job: w.job,
            from: &from,
            to: &to,
            what,
            why,
        };
        let r = match mid {
            Some(mid) if split_first || w.attempts >= ATTEMPTS => {
                ev("split").emit();
                self.handle.backfill_split_window(w, mid, why).await
            }
            None if w.attempts >= ATTEMPTS => {
                ev("failed").emit();
                self.handle.backfill_fail_window(w, &format!("{why} (after {} queries)", w.attempts)).await
            }
            _ => {
                ev("retried").emit();
                self.handle.backfill_retry_window(w, why).await
            }
        };
        r.map(|()| Step::Released).map_err(store_retry)
    }

    /// One look at a running window's query; reads its records once it succeeded.
    async fn step(&mut self, w: &BackfillWindow) -> Result<Step, Outcome> {
        let id = w.query_id.clone().unwrap_or_default();
        let q = match self.client.status(&id).await {
            Ok(q) => q,
            Err(ApiError::Rejected { status: 404, .. }) => {
                return self.set_back(w, "the query no longer exists at Microsoft", false).await;
            }
            Err(e) => return Err(self.outcome(e)),
        };
        match q.status {
            QueryStatus::NotStarted | QueryStatus::Running | QueryStatus::Other => {
                self.back_off(&id);
                Ok(Step::Waiting)
            }
            QueryStatus::Failed | QueryStatus::Cancelled => {
                self.set_back(w, &format!("Microsoft reports the query {:?}", q.status).to_lowercase(), false).await
            }
            QueryStatus::Succeeded => self.read(w, &q).await,
        }
    }

    /// Fetches one page, fetching it again while it does not parse.
    async fn page(&self, url: &str) -> Result<(Vec<u8>, Vec<protocol::PageItem>, Option<String>), ApiError> {
        let mut last = None;
        for _ in 0..PAGE_TRIES {
            let reply = self.client.page(url).await?;
            match protocol::parse_records(&reply.body) {
                Ok((items, next)) => return Ok((reply.body, items, next)),
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant(), error = %e, "a backfill records page is broken; fetching it again");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ApiError::Transient("records page unreadable".into())))
    }

    async fn read(&mut self, w: &BackfillWindow, q: &Query) -> Result<Step, Outcome> {
        let min = self.settings.min_window.as_millis() as i64;
        let splittable = protocol::split_point(w.start_ms, w.end_ms, min).is_some();
        let mut cut_short = None;
        if q.limit_exceeded == Some(true) {
            if splittable {
                return self.set_back(w, "Microsoft truncated the query (isRecordCountLimitExceeded)", true).await;
            }
            cut_short = Some(
                "truncated by Microsoft's record limit at the smallest window; what it returned was kept".to_string(),
            );
        }
        let limit = q.record_limit.unwrap_or(self.settings.record_limit);
        let mut url = self.client.first_page(&q.id);
        let (mut pages, mut count) = (0u32, 0u64);
        loop {
            pages += 1;
            if pages > self.client.max_pages {
                let why =
                    format!("the query's records ran past {} pages (a next link that loops?)", self.client.max_pages);
                return self.set_back(w, &why, true).await;
            }
            let (body, items, next) = match self.page(&url).await {
                Ok(p) => p,
                Err(e) if protocol::is_not_ready(&e) => {
                    self.back_off(&q.id);
                    return Ok(Step::Waiting);
                }
                // A failing page, after the caller's retries and the fetches above: a smaller
                // window has fewer records and pages.
                Err(e @ (ApiError::Transient(_) | ApiError::Boundary(_))) => {
                    return self.set_back(w, &format!("a records page failed: {e}"), true).await;
                }
                Err(e) => return Err(self.outcome(e)),
            };
            let mut parsed =
                ParsedBlob { records: Vec::with_capacity(items.len()), without_id: 0, throttled: Vec::new() };
            for it in items {
                let text = std::str::from_utf8(&body[it.raw.clone()]).unwrap_or_default();
                parsed.push(text, it.raw);
                if let (Some(r), Some(env)) = (parsed.records.last_mut(), it.envelope) {
                    r.envelope = Some(env);
                }
            }
            count += parsed.records.len() as u64;
            let last = next.is_none();
            // Where the version does not say it truncated, a full query is taken as truncated.
            let silent_cut = last && q.limit_exceeded.is_none() && count >= limit;
            if silent_cut && !splittable {
                cut_short = Some(format!(
                    "returned {count} records, the record limit, at the smallest window; what it returned was kept"
                ));
            }
            let checkpoint = if last && !(silent_cut && splittable) {
                Checkpoint::BackfillWindowDone {
                    job: w.job,
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    records: count as i64,
                    cut_short: cut_short.clone(),
                }
            } else {
                Checkpoint::None
            };
            self.handle.ingest_blob(body, parsed, checkpoint).await.map_err(store_retry)?;
            match next {
                Some(n) => url = n,
                None if silent_cut && splittable => {
                    let why = format!(
                        "the query returned {count} records, its record limit, without saying it was truncated"
                    );
                    return self.set_back(w, &why, true).await;
                }
                None => {
                    self.polls.remove(&q.id);
                    let (from, to) = (fmt_time(w.start_ms), fmt_time(w.end_ms));
                    if let Some(why) = &cut_short {
                        let (tenant, job) = (self.tenant(), w.job);
                        events::BackfillWindowSetBack { tenant, job, from: &from, to: &to, what: "failed", why }.emit();
                    }
                    events::BackfillWindowDone {
                        tenant: self.tenant(),
                        job: w.job,
                        from: &from,
                        to: &to,
                        records: count,
                    }
                    .emit();
                    return Ok(Step::Released);
                }
            }
        }
    }

    async fn report(&self) -> Result<(), Outcome> {
        let (jobs, finished) = self.handle.backfill_progress().await.map_err(store_retry)?;
        let active = jobs.iter().filter(|j| j.state == "active");
        let sum = |f: fn(&crate::store::BackfillProgress) -> i64| active.clone().map(f).sum::<i64>();
        events::BackfillProgressed {
            tenant: self.tenant(),
            done: sum(|j| j.windows_done),
            pending: sum(|j| j.windows_pending),
            running: sum(|j| j.windows_running),
            failed: sum(|j| j.windows_failed),
        }
        .emit();
        for j in jobs.iter().filter(|j| finished.contains(&j.id)) {
            events::BackfillFinished {
                tenant: self.tenant(),
                job: j.id,
                windows: j.windows_total(),
                failed: j.windows_failed,
                records: j.records,
            }
            .emit();
        }
        Ok(())
    }

    async fn run_cycle(&mut self, shutdown: &CancellationToken) -> Result<Outcome, Outcome> {
        self.first_start().await.map_err(store_retry)?;
        let mut windows = self.handle.backfill_open_windows().await.map_err(store_retry)?;
        if !self.orphans_checked {
            self.adopt_orphans(&mut windows).await?;
        }
        let mut running = 0u32;
        for w in windows.iter().filter(|w| w.state == WindowState::Running) {
            let due = w.query_id.as_deref().is_some_and(|id| self.due(id));
            if shutdown.is_cancelled() || !due {
                running += 1;
                continue;
            }
            if !self.handle.wait_open(shutdown).await {
                return Ok(Outcome::Done);
            }
            if let Step::Waiting = self.step(w).await? {
                running += 1;
            }
        }
        let pending: Vec<&BackfillWindow> = windows.iter().filter(|w| w.state == WindowState::Pending).collect();
        // No pending window, no submission count to read: an idle stream costs two queries.
        let held = if shutdown.is_cancelled() || pending.is_empty() {
            None
        } else {
            self.submit(&pending, &mut running).await?
        };
        self.report().await?;
        // While queries run, the next cycle comes at the poll interval to look at them.
        Ok(match held {
            // Nothing runs, so nothing needs polling until a submission leaves the 24 h.
            Some(Held::Daily(why)) if running == 0 => Outcome::Retry { after: Some(Duration::from_secs(900)), why },
            Some(Held::Throttled { after, why }) if running == 0 => Outcome::Retry { after, why },
            _ => Outcome::Done,
        })
    }
}

#[path = "submit.rs"]
mod submit;

impl Source for AuditQueryStream {
    fn calls(&self) -> Option<std::sync::Arc<crate::sources::calls::CallHealth>> {
        Some(self.client.health())
    }

    async fn cycle(&mut self, shutdown: &CancellationToken) -> Outcome {
        match self.run_cycle(shutdown).await {
            Ok(o) | Err(o) => o,
        }
    }
}
