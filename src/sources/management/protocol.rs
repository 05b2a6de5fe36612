//! The Management Activity API's rules, as pure functions: listing limits, error codes,
//! response parsing, and `next_action`, which turns each answer into the next step. No I/O
//! here, so the tricky behaviour is unit-tested with a fixed clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::sources::boundary::BoundaryError;
pub use crate::sources::error::ApiError;
use crate::sources::window::Limits;
use crate::store::BlobListing;

/// Longest legal listing window.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Past `contentExpiration` a fetch is still tried for a day: Microsoft counts 7 days from when
/// it first announced the blob, which can be later than `contentCreated`.
pub const EXPIRY_GRACE_MS: i64 = 86_400_000;

/// Format accepted for `startTime`/`endTime`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The listing limits for the window planner.
pub fn limits(retention_margin: Duration) -> Limits {
    Limits { retention: RETENTION, margin: retention_margin, max_window: MAX_WINDOW, lag: Duration::ZERO }
}

/// The retry-once allowances of one polling cycle, as in Elastic Beats' o365audit input: each
/// Microsoft answer is turned into the next action here, with no I/O, so the rules are tested
/// with a fixed clock.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attempts {
    /// The cycle's windows were planned again after AF20030/AF20055 (outside the server's range).
    pub replanned: bool,
    /// This window restarted the subscription after AF20022/AF20023.
    pub restarted_subscription: bool,
    /// This window went back to its first page after AF20031.
    pub restarted_page: bool,
}

impl Attempts {
    /// The per-window allowances start again with each window.
    pub fn start_window(&mut self) {
        self.restarted_subscription = false;
        self.restarted_page = false;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A listing page was ingested; `next` is its next-page link.
    Listed {
        next: Option<String>,
    },
    ListFailed(ApiError),
    /// A blob the ledger holds as listed is due to be fetched.
    BlobDue {
        expiration_ms: Option<i64>,
    },
    BlobFailed(ApiError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    FetchPage(String),
    WindowDone,
    /// Start the subscription, then ask for the same page again.
    StartSubscription,
    /// Ask for the window's first page again; the ledger drops what was already listed.
    RestartWindow,
    /// Plan the cycle's windows again, with the server clock learned from `Date` meanwhile.
    Replan,
    FetchBlob,
    /// The blob can no longer be fetched: record it as expired with this reason.
    WriteOff(String),
    /// The blob is over the size or compression cap: record it as refused with this reason
    /// (counted and shown, never fetched again), and go on with the others.
    Refuse(String),
    /// Only this blob failed: it stays pending and the cycle ends incomplete.
    Postpone(ApiError),
    /// The cycle ends with this error.
    Fail(ApiError),
}

/// An error that concerns the whole tenant (a refused token, a missing permission), not one blob.
fn tenant_wide(e: &ApiError) -> bool {
    match e {
        ApiError::Unauthorized(_) | ApiError::Credential(_) | ApiError::Unavailable(_) => true,
        ApiError::Fatal { code, .. } => code.starts_with("AF"),
        _ => false,
    }
}

pub fn next_action(a: &mut Attempts, event: Event, now_ms: i64) -> Action {
    match event {
        Event::Listed { next: Some(n) } => Action::FetchPage(n),
        Event::Listed { next: None } => Action::WindowDone,
        Event::ListFailed(ApiError::NoSubscription { .. }) if !a.restarted_subscription => {
            a.restarted_subscription = true;
            Action::StartSubscription
        }
        Event::ListFailed(ApiError::BadPage { .. }) if !a.restarted_page => {
            a.restarted_page = true;
            Action::RestartWindow
        }
        Event::ListFailed(ApiError::BadWindow { .. }) if !a.replanned => {
            a.replanned = true;
            Action::Replan
        }
        Event::ListFailed(e) => Action::Fail(e),
        // Only a blob expired for longer than the grace is written off without a request:
        // AF20051 is certain by then.
        Event::BlobDue { expiration_ms: Some(e) } if e.saturating_add(EXPIRY_GRACE_MS) <= now_ms => {
            Action::WriteOff("contentExpiration passed more than a day before the blob could be fetched".into())
        }
        Event::BlobDue { .. } => Action::FetchBlob,
        Event::BlobFailed(ApiError::Gone { code, message }) => Action::WriteOff(format!("{code}: {message}")),
        Event::BlobFailed(ApiError::Boundary(e @ (BoundaryError::TooLarge { .. } | BoundaryError::Bomb { .. }))) => {
            Action::Refuse(e.to_string())
        }
        Event::BlobFailed(e) if tenant_wide(&e) => Action::Fail(e),
        Event::BlobFailed(e) => Action::Postpone(e),
    }
}

/// One item of a content listing.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentItem {
    pub content_id: String,
    pub content_uri: String,
    pub content_created: String,
    #[serde(default)]
    pub content_expiration: Option<String>,
}

impl ContentItem {
    pub fn listing(&self) -> BlobListing {
        BlobListing {
            content_id: self.content_id.clone(),
            content_uri: self.content_uri.clone(),
            content_created: self.content_created.clone(),
            content_expiration_ms: self.content_expiration.as_deref().and_then(crate::sources::record::parse_time_ms),
        }
    }
}

pub fn parse_listing(body: &[u8]) -> Result<Vec<ContentItem>, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Transient(format!("content listing is not the documented JSON array: {e}")))
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    #[serde(rename = "contentType")]
    pub content_type: String,
    pub status: String,
}

/// The next-page URL: `NextPageUri`, or `NextPageUrl` as the troubleshooting page spells it.
pub fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.as_str().eq_ignore_ascii_case("nextpageuri") || k.as_str().eq_ignore_ascii_case("nextpageurl"))
        .and_then(|(_, v)| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Extracts `(code, message)` from an error body, tolerating the single-quoted form that
/// Microsoft's own troubleshooting page shows for AF429.
pub fn error_code(body: &[u8]) -> (String, String) {
    if let Some(parts) = crate::sources::error::parse_error_body(body) {
        return parts;
    }
    let text = String::from_utf8_lossy(body);
    let code = text
        .find("AF")
        .map(|i| text[i..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>())
        .filter(|c| c.len() > 2 && c[2..].chars().all(|d| d.is_ascii_digit()))
        .unwrap_or_default();
    (code, text.chars().take(300).collect())
}

/// Classifies a non-success HTTP response.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> ApiError {
    let (code, message) = error_code(body);
    match code.as_str() {
        "AF429" => return ApiError::Throttled { code, retry_after },
        "AF50000" => return ApiError::Transient(format!("AF50000: {message}")),
        "AF20022" | "AF20023" => return ApiError::NoSubscription { code, message },
        "AF20030" | "AF20055" => return ApiError::BadWindow { code, message },
        "AF20050" | "AF20051" => return ApiError::Gone { code, message },
        "AF20031" => return ApiError::BadPage { code, message },
        _ => {}
    }
    match status {
        401 => ApiError::Unauthorized(if code.is_empty() { message } else { format!("{code}: {message}") }),
        429 => ApiError::Throttled { code: "HTTP 429".into(), retry_after },
        408 | 500..=599 => ApiError::Transient(format!("HTTP {status} {code} {message}").trim().to_string()),
        // A 4xx without a documented AF code concerns this request, not the tenant.
        400..=499 if !code.starts_with("AF") => ApiError::Rejected { status, code, message: explain(&message) },
        _ => ApiError::Fatal {
            code: if code.is_empty() { format!("HTTP {status}") } else { code },
            message: explain(&message),
        },
    }
}

fn explain(message: &str) -> String {
    message.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn af429_is_throttling_even_as_403_and_single_quoted() {
        let body = br#"{'error':{'code':'AF429','message':'Too many requests. Method=GetBlob, PublisherId=0000'}}"#;
        assert!(matches!(classify(403, body, None), ApiError::Throttled { .. }));
        let json = br#"{"error":{"code":"AF429","message":"x"}}"#;
        assert_eq!(
            classify(403, json, Some(Duration::from_secs(3))),
            ApiError::Throttled { code: "AF429".into(), retry_after: Some(Duration::from_secs(3)) }
        );
    }

    #[test]
    fn error_codes_are_classified_on_purpose() {
        let b = |c: &str| format!(r#"{{"error":{{"code":"{c}","message":"m"}}}}"#).into_bytes();
        assert!(matches!(classify(400, &b("AF20022"), None), ApiError::NoSubscription { .. }));
        assert!(matches!(classify(400, &b("AF20023"), None), ApiError::NoSubscription { .. }));
        assert!(matches!(classify(400, &b("AF20055"), None), ApiError::BadWindow { .. }));
        assert!(matches!(classify(400, &b("AF20051"), None), ApiError::Gone { .. }));
        assert!(matches!(classify(500, &b("AF50000"), None), ApiError::Transient(_)));
        assert!(matches!(classify(403, &b("AF10001"), None), ApiError::Fatal { .. }));
        assert!(matches!(classify(400, &b("AF20010"), None), ApiError::Fatal { .. }));
        assert!(matches!(classify(503, b"", None), ApiError::Transient(_)));
        assert!(matches!(classify(401, b"", None), ApiError::Unauthorized(_)));
        assert!(classify(429, b"", None).is_retryable());
    }

    fn af(code: &str) -> ApiError {
        ApiError::Fatal { code: code.into(), message: "m".into() }
    }

    #[test]
    fn each_allowance_is_used_once_per_window_or_cycle() {
        let mut a = Attempts::default();
        let no_sub = || Event::ListFailed(ApiError::NoSubscription { code: "AF20022".into(), message: "m".into() });
        let bad_page = || Event::ListFailed(ApiError::BadPage { code: "AF20031".into(), message: "m".into() });
        let bad_window = || Event::ListFailed(ApiError::BadWindow { code: "AF20055".into(), message: "m".into() });
        assert_eq!(next_action(&mut a, no_sub(), 0), Action::StartSubscription);
        assert!(matches!(next_action(&mut a, no_sub(), 0), Action::Fail(ApiError::NoSubscription { .. })));
        assert_eq!(next_action(&mut a, bad_page(), 0), Action::RestartWindow);
        assert!(matches!(next_action(&mut a, bad_page(), 0), Action::Fail(ApiError::BadPage { .. })));
        // The next window gets its own allowances; the replan is one per cycle.
        a.start_window();
        assert_eq!(next_action(&mut a, no_sub(), 0), Action::StartSubscription);
        assert_eq!(next_action(&mut a, bad_page(), 0), Action::RestartWindow);
        assert_eq!(next_action(&mut a, bad_window(), 0), Action::Replan);
        a.start_window();
        assert!(matches!(next_action(&mut a, bad_window(), 0), Action::Fail(ApiError::BadWindow { .. })));
        assert_eq!(next_action(&mut a, Event::Listed { next: Some("u".into()) }, 0), Action::FetchPage("u".into()));
        assert_eq!(next_action(&mut a, Event::Listed { next: None }, 0), Action::WindowDone);
    }

    #[test]
    fn a_blob_is_tried_for_a_day_past_its_expiration_then_written_off() {
        let mut a = Attempts::default();
        let expires = parse("2026-11-21T12:00:00Z");
        let due = |now: &str| {
            next_action(&mut Attempts::default(), Event::BlobDue { expiration_ms: Some(expires) }, parse(now))
        };
        assert_eq!(due("2026-11-21T11:00:00Z"), Action::FetchBlob);
        assert_eq!(due("2026-11-22T11:59:59Z"), Action::FetchBlob, "still within the day of grace");
        assert!(matches!(due("2026-11-22T12:00:00Z"), Action::WriteOff(_)));
        assert_eq!(next_action(&mut a, Event::BlobDue { expiration_ms: None }, i64::MAX), Action::FetchBlob);
        let gone = ApiError::Gone { code: "AF20051".into(), message: "older than 7 days".into() };
        assert_eq!(
            next_action(&mut a, Event::BlobFailed(gone), 0),
            Action::WriteOff("AF20051: older than 7 days".into())
        );
    }

    #[test]
    fn one_blob_failing_postpones_it_but_a_tenant_wide_refusal_ends_the_cycle() {
        let mut a = Attempts::default();
        let odd = classify(404, b"not here", None);
        assert!(matches!(odd, ApiError::Rejected { status: 404, .. }), "{odd:?}");
        assert!(matches!(next_action(&mut a, Event::BlobFailed(odd), 0), Action::Postpone(_)));
        let throttled = ApiError::Throttled { code: "AF429".into(), retry_after: None };
        assert!(matches!(next_action(&mut a, Event::BlobFailed(throttled), 0), Action::Postpone(_)));
        assert!(matches!(next_action(&mut a, Event::BlobFailed(af("AF10001")), 0), Action::Fail(_)));
        let refused = ApiError::Unauthorized("401".into());
        assert!(matches!(next_action(&mut a, Event::BlobFailed(refused), 0), Action::Fail(_)));
        let bomb = ApiError::Boundary(BoundaryError::Bomb { what: "content blob", ratio: 100 });
        assert!(matches!(next_action(&mut a, Event::BlobFailed(bomb), 0), Action::Refuse(m) if m.contains("100:1")));
        let away = ApiError::Boundary(BoundaryError::ForeignLink { shown: "x".into(), expected: "y".into() });
        assert!(
            matches!(next_action(&mut a, Event::BlobFailed(away), 0), Action::Postpone(_)),
            "stays pending, loudly"
        );
    }

    fn parse(s: &str) -> i64 {
        crate::sources::window::parse_cursor(s).unwrap().timestamp_millis()
    }
}
