//! Creating queries: within `max_active_queries`, the rolling-24 h submission budget and what a
//! 429 taught; and, after a start, taking over queries created just before a crash.

use std::time::Instant;

use super::{AuditQueryStream, Held, LEARNED_FOR, store_retry};
use crate::sources::audit_query::protocol::fmt_time;
use crate::sources::driver::Outcome;
use crate::sources::error::ApiError;
use crate::store::{BackfillWindow, WindowState};
use crate::telemetry::events;

impl AuditQueryStream {
    /// Creates queries for pending windows, within both limits and what a 429 taught. `Err`
    /// carries the outcome of a refusal; `Ok(Some(_))` says why the rest is held back.
    pub(super) async fn submit(
        &mut self,
        pending: &[&BackfillWindow],
        running: &mut u32,
    ) -> Result<Option<Held>, Outcome> {
        let s = &self.settings;
        let learned = self.learned_cap.filter(|(_, at)| at.elapsed() < LEARNED_FOR).map(|(n, _)| n);
        let max_active = learned.map_or(s.max_active_queries, |n| n.min(s.max_active_queries));
        let max_subs = i64::from(s.max_submissions_per_day);
        let mut subs = self.handle.backfill_submissions_today().await.map_err(store_retry)?;
        for w in pending {
            if *running >= max_active {
                return Ok(None);
            }
            if subs >= max_subs {
                return Ok(Some(Held::Daily(format!(
                    "{subs} of {max_subs} query submissions of the rolling 24 h used (max_submissions_per_day); the next windows wait"
                ))));
            }
            let q = match self.client.create(w.job, w.start_ms, w.end_ms, &w.filters).await {
                Ok(q) => q,
                Err(ApiError::Throttled { retry_after, .. }) => {
                    self.learned_cap = Some(((*running).max(1), Instant::now()));
                    let why = format!(
                        "Microsoft refused a new query with 429 while {} ran: at most that many for {}",
                        *running,
                        humantime::format_duration(LEARNED_FOR)
                    );
                    tracing::warn!(tenant = %self.tenant(), "{why}");
                    return Ok(Some(Held::Throttled { after: retry_after, why }));
                }
                // The window stays pending; queries already running are still looked after.
                Err(e @ (ApiError::Transient(_) | ApiError::Boundary(_))) if *running > 0 => {
                    tracing::warn!(tenant = %self.tenant(), error = %e, "creating a backfill query failed; trying again next cycle");
                    return Ok(None);
                }
                Err(e) => return Err(self.outcome(e)),
            };
            self.handle.backfill_query_created(w, &q.id).await.map_err(store_retry)?;
            let (from, to) = (fmt_time(w.start_ms), fmt_time(w.end_ms));
            events::BackfillQueryCreated { tenant: self.tenant(), job: w.job, from: &from, to: &to, query_id: &q.id }
                .emit();
            self.polls.insert(q.id, (Instant::now() + self.settings.poll_interval, self.settings.poll_interval));
            *running += 1;
            subs += 1;
        }
        Ok(None)
    }

    /// A crash between Microsoft creating a query and the store recording it leaves the window
    /// pending: after a start, such a window takes its query over instead of creating another.
    pub(super) async fn adopt_orphans(&mut self, windows: &mut [BackfillWindow]) -> Result<(), Outcome> {
        self.orphans_checked = true;
        if !windows.iter().any(|w| w.state == WindowState::Pending) {
            return Ok(());
        }
        let listed = match self.client.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant(), error = %e,
                    "could not list audit log queries; a query created just before a crash may be created again");
                return Ok(());
            }
        };
        for w in windows.iter_mut().filter(|w| w.state == WindowState::Pending) {
            if let Some(q) = listed.iter().find(|q| q.is_for(w.job, w.start_ms, w.end_ms, &w.filters)) {
                tracing::info!(tenant = %self.tenant(), job = w.job, query = %q.id,
                    "a backfill window takes over the query created before the restart");
                self.handle.backfill_query_created(w, &q.id).await.map_err(store_retry)?;
                (w.state, w.query_id) = (WindowState::Running, Some(q.id.clone()));
            }
        }
        Ok(())
    }
}
