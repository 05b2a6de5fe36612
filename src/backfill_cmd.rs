//! `auditkeeper backfill`: registers a job in the store, then shows its progress until it ends.
//!
//! The job runs inside the daemon (the tenant's `audit_query/backfill` stream), beside the live
//! feed, so the daemon never has to stop: this command only writes the job into the database
//! (a small transaction, safe while the daemon runs, as `dead-letter retry` is) and reads its
//! progress back. Interrupting the command does not stop the job; `--cancel N` does.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Settings;
use crate::store::{BackfillFilters, BackfillProgress, NewBackfill, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("no tenant named {0:?} in the config (tenants: {1})")]
    UnknownTenant(String, String),
    #[error("tenant {0:?} has no backfill: {1}")]
    NotOffered(String, String),
    #[error("{0}: {1:?} is not a date (YYYY-MM-DD), an RFC 3339 time, or an age such as 90d")]
    BadTime(&'static str, String),
    #[error("--since ({0}) must be before --until ({1})")]
    Empty(String, String),
    #[error(
        "--since {0} is more than {1} days ago: the unified audit log keeps 180 days (Audit Standard), a year with Audit Premium"
    )]
    TooOld(String, u32),
    #[error("{0} holds an empty value")]
    EmptyFilter(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no backfill job {0} is active")]
    NoSuchJob(i64),
}

/// What the command line asked for.
pub struct Request<'a> {
    pub tenant: &'a str,
    pub since: &'a str,
    pub until: Option<&'a str>,
    pub filters: BackfillFilters,
}

/// `2026-06-01`, `2026-06-01T12:00:00Z`, or an age (`90d`, `36h`) before `now`.
pub fn parse_time(what: &'static str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, BackfillError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    match humantime::parse_duration(s).ok().and_then(|d| chrono::Duration::from_std(d).ok()) {
        Some(d) => Ok(now - d),
        None => Err(BackfillError::BadTime(what, s.to_string())),
    }
}

/// Checks the request against the config and registers the job; returns its number and the
/// number of windows.
pub fn register(settings: &Settings, r: &Request<'_>) -> Result<(i64, usize), BackfillError> {
    let names = || settings.tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
    let t = settings
        .tenants
        .iter()
        .find(|t| t.name == r.tenant)
        .ok_or_else(|| BackfillError::UnknownTenant(r.tenant.to_string(), names()))?;
    let Some(a) = &t.audit_query else {
        return Err(BackfillError::NotOffered(
            t.name.clone(),
            "the audit log query API is off for it ([tenants.audit_query] enabled = false), or its cloud does not offer it (global service only)".into(),
        ));
    };
    for (k, v) in [
        ("--record-types", &r.filters.record_types),
        ("--operations", &r.filters.operations),
        ("--users", &r.filters.users),
    ] {
        if v.iter().any(|x| x.trim().is_empty()) {
            return Err(BackfillError::EmptyFilter(k));
        }
    }
    let now = Utc::now();
    let since = parse_time("--since", r.since, now)?;
    let until = match r.until {
        Some(u) => parse_time("--until", u, now)?.min(now),
        None => now,
    };
    if since >= until {
        return Err(BackfillError::Empty(since.to_rfc3339(), until.to_rfc3339()));
    }
    let max = crate::sources::audit_query::config::MAX_DAYS;
    if now - since > chrono::Duration::days(i64::from(max)) {
        return Err(BackfillError::TooOld(since.to_rfc3339(), max));
    }
    let job = NewBackfill {
        tenant: t.name.clone(),
        since_ms: since.timestamp_millis(),
        until_ms: until.timestamp_millis(),
        window_ms: a.window.as_millis() as i64,
        filters: r.filters.clone(),
        origin: "command",
    };
    let windows = crate::store::backfill_windows(job.since_ms, job.until_ms, job.window_ms).len();
    let id = Store::open(&settings.state_dir)?.register_backfill(&job)?;
    Ok((id, windows))
}

/// Dedupe keys live `spool.seen_ttl`: what the live feed delivered before that is not
/// recognised, and would be forwarded again. Said when the live feed has collected for this
/// tenant and the period reaches back past that horizon.
fn redelivery_warning(settings: &Settings, tenant: &str, since: &str) -> Option<String> {
    let now = Utc::now();
    let since = parse_time("--since", since, now).ok()?;
    let horizon = now - chrono::Duration::from_std(settings.spool.seen_ttl).ok()?;
    let live = Store::open_read_only(&settings.state_dir).and_then(|s| s.streams()).ok()?;
    let collected = live.iter().any(|s| s.tenant == tenant && s.source == "management" && s.counters.records_total > 0);
    (collected && since < horizon).then(|| {
        format!(
            "records between {} and {} that the live feed already delivered more than spool.seen_ttl ({}) ago are no longer recognised and will be forwarded again",
            since.to_rfc3339(),
            horizon.to_rfc3339(),
            humantime::format_duration(settings.spool.seen_ttl)
        )
    })
}

pub fn cancel(state_dir: &Path, job: i64) -> Result<(), BackfillError> {
    if Store::open(state_dir)?.cancel_backfill(job)? { Ok(()) } else { Err(BackfillError::NoSuchJob(job)) }
}

fn job(state_dir: &Path, id: i64) -> Result<Option<BackfillProgress>, StoreError> {
    Ok(Store::open_read_only(state_dir)?.backfill_jobs()?.into_iter().find(|j| j.id == id))
}

/// One line about a job, as the plain log and the summary print it.
pub fn describe(j: &BackfillProgress, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1.0);
    let rate = j.records as f64 / secs;
    let total = j.windows_total().max(1);
    let left = match j.windows_done {
        0 => String::from("time left not known yet"),
        done => {
            let per = secs / done as f64;
            let rest = Duration::from_secs((per * (total - done - j.windows_failed).max(0) as f64) as u64);
            format!("about {} left", humantime::format_duration(rest))
        }
    };
    format!(
        "job {}: {}/{} windows done, {} running, {} failed; {} records, {:.0} records/s; {}",
        j.id, j.windows_done, total, j.windows_running, j.windows_failed, j.records, rate, left
    )
}

/// Follows the job until it ends: a progress bar on a terminal, a line per finished window
/// otherwise. Returns the job as it ended.
pub fn follow(state_dir: &Path, id: i64) -> Result<BackfillProgress, StoreError> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} windows  {msg}  (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        b.set_style(style);
        b
    });
    let mut last_done = -1;
    loop {
        let Some(j) = job(state_dir, id)? else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        let rate = j.records as f64 / started.elapsed().as_secs_f64().max(1.0);
        match &bar {
            Some(b) => {
                b.set_length(j.windows_total() as u64);
                b.set_position(j.windows_done as u64);
                b.set_message(format!("{} records, {rate:.0}/s, {} failed", j.records, j.windows_failed));
            }
            None if j.windows_done != last_done => eprintln!("{}", describe(&j, started.elapsed())),
            None => {}
        }
        last_done = j.windows_done;
        if j.state != "active" {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Ok(j);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short, env = "AUDITKEEPER_CONFIG")]
    pub config: std::path::PathBuf,
    /// The tenant's `name` in the config.
    #[arg(long, required_unless_present = "cancel")]
    pub tenant: Option<String>,
    /// Start: a date (2026-06-01), an RFC 3339 time, or an age (90d).
    #[arg(long, required_unless_present = "cancel")]
    pub since: Option<String>,
    /// End (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Only these record types (auditLogRecordType, e.g. exchangeItem,sharePointFileOperation).
    #[arg(long, value_delimiter = ',')]
    pub record_types: Vec<String>,
    /// Only these operations (e.g. MailItemsAccessed,New-InboxRule).
    #[arg(long, value_delimiter = ',')]
    pub operations: Vec<String>,
    /// Only these users (user principal names).
    #[arg(long, value_delimiter = ',')]
    pub users: Vec<String>,
    /// Register the job and return; `status` shows its progress.
    #[arg(long)]
    pub no_wait: bool,
    /// Stop an active job (queries already running are left to Microsoft).
    #[arg(long, conflicts_with_all = ["tenant", "since", "until"])]
    pub cancel: Option<i64>,
}

pub fn main(settings: &Settings, a: &Args) -> std::process::ExitCode {
    use std::process::ExitCode;
    if let Some(id) = a.cancel {
        return match cancel(&settings.state_dir, id) {
            Ok(()) => {
                println!("backfill job {id} cancelled");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("backfill: {e}");
                ExitCode::from(1)
            }
        };
    }
    let filters = BackfillFilters {
        record_types: a.record_types.clone(),
        operations: a.operations.clone(),
        users: a.users.clone(),
    };
    let r = Request {
        tenant: a.tenant.as_deref().unwrap_or_default(),
        since: a.since.as_deref().unwrap_or_default(),
        until: a.until.as_deref(),
        filters,
    };
    let (id, windows) = match register(settings, &r) {
        Ok(x) => x,
        Err(e @ BackfillError::Store(_)) => {
            eprintln!("backfill: {e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("backfill: {e}");
            return ExitCode::from(2);
        }
    };
    println!("backfill job {id} registered for tenant {}: {windows} windows", r.tenant);
    if let Some(w) = redelivery_warning(settings, r.tenant, r.since) {
        eprintln!("warning: {w}");
    }
    // Not probed by taking the state lock: a daemon starting at that moment would find it
    // held and exit.
    println!("the daemon starts it within its poll interval (or when it next starts)");
    if a.no_wait {
        println!("`auditkeeper status` shows its progress");
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    match follow(&settings.state_dir, id) {
        Ok(j) => {
            println!("{} ({})", describe(&j, started.elapsed()), j.state);
            if j.windows_failed > 0 {
                println!(
                    "windows that failed are listed by `auditkeeper status`; last reason: {}",
                    j.last_detail.as_deref().unwrap_or("-")
                );
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backfill: cannot read progress: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_rfc3339_or_ages() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("--since", "2026-06-01", now).unwrap().to_rfc3339(), "2026-06-01T00:00:00+00:00");
        assert_eq!(
            parse_time("--since", "2026-06-01T08:30:00+02:00", now).unwrap().to_rfc3339(),
            "2026-06-01T06:30:00+00:00"
        );
        assert_eq!(parse_time("--since", "90d", now).unwrap().to_rfc3339(), "2026-09-03T12:00:00+00:00");
        let e = parse_time("--until", "last tuesday", now).unwrap_err().to_string();
        assert!(e.starts_with("--until: \"last tuesday\" is not a date"), "{e}");
    }

    #[test]
    fn a_progress_line_says_how_far_and_how_long() {
        let j = BackfillProgress {
            id: 3,
            tenant: "t".into(),
            since_ms: 0,
            until_ms: 1,
            filters: Default::default(),
            origin: "command".into(),
            state: "active".into(),
            created_at_ms: 0,
            finished_at_ms: None,
            windows_done: 10,
            windows_pending: 28,
            windows_running: 2,
            windows_failed: 0,
            records: 5_000,
            last_detail: None,
        };
        let line = describe(&j, Duration::from_secs(100));
        assert_eq!(line, "job 3: 10/40 windows done, 2 running, 0 failed; 5000 records, 50 records/s; about 5m left");
    }
}
