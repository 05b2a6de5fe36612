//! A backfill stream's own state (jobs, windows, submissions), read and moved through its
//! `StreamHandle` like a cursor: every call first waits until the stream's pages are written,
//! so a window's state never runs ahead of the records it stands for.

use super::{PipelineError, StreamHandle};
use crate::store::{BackfillProgress, BackfillWindow, NewBackfill};

impl StreamHandle {
    async fn backfill_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store, &str) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, PipelineError> {
        self.flush().await?;
        let tenant = self.key.tenant.clone();
        self.pipeline.blocking(move |s| f(s, &tenant)).await
    }

    /// Registers the first-start job of `backfill_days` unless this tenant ever had one.
    pub async fn ensure_first_backfill(&self, job: NewBackfill) -> Result<Option<i64>, PipelineError> {
        self.backfill_state(move |s, t| {
            if s.backfill_exists(t, job.origin)? { Ok(None) } else { s.register_backfill(&job).map(Some) }
        })
        .await
    }

    pub async fn backfill_open_windows(&self) -> Result<Vec<BackfillWindow>, PipelineError> {
        self.backfill_state(|s, t| s.backfill_open_windows(t)).await
    }

    pub async fn backfill_submissions_today(&self) -> Result<i64, PipelineError> {
        self.backfill_state(|s, t| s.backfill_submissions_today(t)).await
    }

    pub async fn backfill_query_created(&self, w: &BackfillWindow, query_id: &str) -> Result<(), PipelineError> {
        let (w, q) = (w.clone(), query_id.to_string());
        self.backfill_state(move |s, t| s.backfill_query_created(t, &w, &q)).await
    }

    pub async fn backfill_retry_window(&self, w: &BackfillWindow, why: &str) -> Result<(), PipelineError> {
        let (w, why) = (w.clone(), why.to_string());
        self.backfill_state(move |s, _| s.backfill_retry_window(&w, &why)).await
    }

    pub async fn backfill_fail_window(&self, w: &BackfillWindow, why: &str) -> Result<(), PipelineError> {
        let (w, why) = (w.clone(), why.to_string());
        self.backfill_state(move |s, _| s.backfill_fail_window(&w, &why)).await
    }

    pub async fn backfill_split_window(&self, w: &BackfillWindow, mid: i64, why: &str) -> Result<(), PipelineError> {
        let (w, why) = (w.clone(), why.to_string());
        self.backfill_state(move |s, _| s.backfill_split_window(&w, mid, &why)).await
    }

    /// Marks finished jobs done; returns every job of this tenant with its progress, and the
    /// ones that just finished.
    pub async fn backfill_progress(&self) -> Result<(Vec<BackfillProgress>, Vec<i64>), PipelineError> {
        self.backfill_state(|s, t| {
            let finished = s.backfill_finish_jobs(t)?;
            let jobs = s.backfill_jobs()?.into_iter().filter(|j| j.tenant == t).collect();
            Ok((jobs, finished))
        })
        .await
    }
}
