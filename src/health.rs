//! How the running daemon answers "alive?" and "ready?", for `/healthz`, `/readyz` and the
//! systemd watchdog, and the one-line summary systemd shows as its status.
//!
//! Alive: the runtime answers (this code runs on it) and the store takes a write within a few
//! seconds, so a hung runtime or a wedged store stops the keepalives and gets the process
//! restarted. Ready: every enabled stream succeeded recently, polling is not paused, and every
//! sink with a backlog delivered recently.

use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::Pipeline;
use crate::store::StreamState;
use crate::telemetry::server::{NotAlive, NotReady};

/// A stream as readiness sees it: its id and how often it polls.
#[derive(Debug, Clone)]
pub struct Expected {
    pub stream: String,
    pub poll_interval: Duration,
}

pub struct DaemonHealth {
    pub pipeline: Arc<Pipeline>,
    /// Replaced when a reload adds or removes tenants.
    pub streams: std::sync::RwLock<Vec<Expected>>,
    pub sinks: Vec<String>,
    pub stale_after_polls: u32,
    pub sink_stale_after: Duration,
    /// One write probe at a time (see `check_alive`).
    pub probe: Arc<tokio::sync::Mutex<()>>,
}

/// A write to the store slower than this means it is wedged.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the daemon should be restarted.
#[derive(Debug, thiserror::Error)]
pub enum Wedged {
    #[error("the store did not take a write within {0:?}")]
    StoreTimeout(Duration),
    #[error("the store cannot be written: {0}")]
    Store(#[from] crate::pipeline::PipelineError),
}

impl DaemonHealth {
    pub async fn check_alive(&self) -> Result<(), Wedged> {
        // A probe stuck behind a wedged store holds the lock until it returns, so later checks
        // time out waiting for it instead of parking one more blocking thread each.
        let probe = async {
            let one = self.probe.clone().lock_owned().await;
            self.pipeline
                .blocking(move |s| {
                    let _one = one;
                    s.probe_write()
                })
                .await
        };
        match tokio::time::timeout(STORE_TIMEOUT, probe).await {
            Err(_) => Err(Wedged::StoreTimeout(STORE_TIMEOUT)),
            // A full disk is handled (polling paused, resumes by itself): not a reason to restart.
            Ok(Err(_)) if self.pipeline.is_disk_full() => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(())) => Ok(()),
        }
    }

    pub async fn check_ready(&self) -> Result<(), NotReady> {
        let mut why = Vec::new();
        if let Some(r) = self.pipeline.gate.reason() {
            why.push(format!("polling paused: {r}"));
        }
        let now = crate::store::now_ms();
        let state = self.pipeline.blocking(|s| Ok((s.stream_status()?, s.backlogs()?))).await;
        let (streams, backlogs) = match state {
            Ok(x) => x,
            Err(e) => return Err(NotReady(vec![format!("the store cannot be read: {e}")])),
        };
        let expected = self.streams.read().unwrap_or_else(|p| p.into_inner()).clone();
        for e in &expected {
            let Some(s) = streams.iter().find(|s| s.stream == e.stream) else { continue };
            // Known and shown elsewhere (a licence or permission the tenant lacks), not a fault.
            if matches!(s.state, StreamState::Unavailable(_)) {
                continue;
            }
            let stale = e.poll_interval.saturating_mul(self.stale_after_polls).max(Duration::from_secs(60));
            let fresh = s.last_success_at.is_some_and(|t| now - t <= stale.as_millis() as i64);
            if !fresh {
                let last = s.last_success_at.map_or("never".to_string(), |t| format!("{}s ago", (now - t) / 1000));
                why.push(format!("stream {} last succeeded {last} ({})", e.stream, s.state));
            }
        }
        for b in backlogs.iter().filter(|b| self.sinks.contains(&b.sink) && b.records > 0) {
            let fresh = b.last_success_at.is_some_and(|t| now - t <= self.sink_stale_after.as_millis() as i64);
            if !fresh {
                let err = b.last_error.as_deref().unwrap_or("no error recorded");
                why.push(format!(
                    "sink {} has {} undelivered record(s) and has not delivered recently: {err}",
                    b.sink, b.records
                ));
            }
        }
        if why.is_empty() { Ok(()) } else { Err(NotReady(why)) }
    }

    /// One line for `systemctl status`: streams by state, and the backlog.
    pub async fn summary(&self) -> String {
        let r = self.pipeline.blocking(|s| Ok((s.streams_by_state()?, s.spool_size()?))).await;
        let Ok((by_state, spool)) = r else { return "state unreadable".into() };
        let states: Vec<String> = by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let paused = if self.pipeline.gate.reason().is_some() { ", POLLING PAUSED" } else { "" };
        format!("streams: {}; spool: {} records{paused}", states.join(", "), spool.records)
    }
}

#[async_trait::async_trait]
impl crate::telemetry::server::Health for DaemonHealth {
    async fn alive(&self) -> Result<(), NotAlive> {
        self.check_alive().await.map_err(|e| NotAlive(Box::new(e)))
    }
    async fn ready(&self) -> Result<(), NotReady> {
        self.check_ready().await
    }
}

/// Tells systemd (when `NOTIFY_SOCKET` is set) the daemon is ready, keeps its watchdog fed only
/// while the daemon is alive, and refreshes the status line. Ends when `stop` is cancelled.
pub async fn notify_systemd(health: Arc<DaemonHealth>, stop: tokio_util::sync::CancellationToken) {
    use sd_notify::NotifyState;
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("collecting")]);
    // Keepalives at half the watchdog interval, as sd_watchdog_enabled(3) advises.
    let keepalive = sd_notify::watchdog_enabled().map(|d| d / 2);
    let tick = keepalive.unwrap_or(Duration::from_secs(10)).min(Duration::from_secs(10));
    let mut last_status = String::new();
    let mut last_status_at = tokio::time::Instant::from_std(crate::common::clock::ago(Duration::from_secs(60)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        if keepalive.is_some() {
            match health.check_alive().await {
                Ok(()) => {
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                }
                Err(why) => {
                    tracing::error!(reason = %why, "not healthy: withholding the watchdog keepalive, so systemd restarts the daemon")
                }
            }
        }
        if last_status_at.elapsed() >= Duration::from_secs(10) {
            let s = health.summary().await;
            if s != last_status {
                let _ = sd_notify::notify(&[NotifyState::Status(&s)]);
                last_status = s;
            }
            last_status_at = tokio::time::Instant::now();
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping: draining the sinks")]);
}
