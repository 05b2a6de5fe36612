//! The Management Activity API's rules, as pure functions: listing windows, error codes,
//! response parsing. No I/O here, so the tricky behaviour is unit-tested with a fixed clock.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

pub use crate::sources::error::ApiError;
use crate::store::BlobListing;

/// Longest legal listing window.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Format accepted for `startTime`/`endTime`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

pub fn parse_cursor(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok().map(|n| n.and_utc()))
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// What one polling cycle lists: `[start, end)` split into legal windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingPlan {
    pub windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Set when the stored cursor was older than the API still serves: content between the two
    /// instants can no longer be listed and may be lost.
    pub gap: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Plans the windows of one cycle.
///
/// - first start (no cursor): from `now - backfill`;
/// - otherwise from `cursor - overlap`, so blobs Microsoft lists late are still found;
/// - never earlier than `now - 7d + margin`, the oldest start the API accepts with latency to spare.
pub fn plan_listing(
    cursor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    backfill: Duration,
    overlap: Duration,
    margin: Duration,
) -> ListingPlan {
    let floor = now - dur(RETENTION) + dur(margin);
    let wanted = match cursor {
        Some(c) => c - dur(overlap),
        None => now - dur(backfill),
    };
    let gap = match cursor {
        Some(c) if c < floor => Some((c, floor)),
        _ => None,
    };
    let start = wanted.max(floor);
    // Whole seconds: the API's time format has no fraction.
    let start = trunc_secs(start);
    let end = trunc_secs(now);
    let mut windows = Vec::new();
    let mut s = start;
    while s < end {
        let e = (s + dur(MAX_WINDOW)).min(end);
        windows.push((s, e));
        s = e;
    }
    ListingPlan { windows, gap }
}

fn trunc_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
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

pub fn parse_listing(body: &[u8]) -> Result<Vec<ContentItem>, String> {
    serde_json::from_slice(body).map_err(|e| format!("content listing is not the documented JSON array: {e}"))
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

    fn t(s: &str) -> DateTime<Utc> {
        parse_cursor(s).unwrap()
    }

    #[test]
    fn first_start_backfills_in_24h_windows_within_retention() {
        let now = t("2026-11-21T12:00:00Z");
        let p = plan_listing(None, now, RETENTION, Duration::from_secs(3600), Duration::from_secs(300));
        assert_eq!(p.windows.first().unwrap().0, t("2026-11-14T12:05:00Z"));
        assert_eq!(p.windows.last().unwrap().1, now);
        assert!(p.windows.iter().all(|(s, e)| *e - *s <= chrono::Duration::hours(24) && s < e));
        assert!(p.windows.windows(2).all(|w| w[0].1 == w[1].0), "windows must be contiguous");
        assert_eq!(p.gap, None);
    }

    #[test]
    fn resume_relists_the_overlap() {
        let now = t("2026-11-21T12:00:00Z");
        let p = plan_listing(
            Some(t("2026-11-21T11:00:00Z")),
            now,
            RETENTION,
            Duration::from_secs(6 * 3600),
            Duration::from_secs(300),
        );
        assert_eq!(p.windows, vec![(t("2026-11-21T05:00:00Z"), now)]);
    }

    #[test]
    fn a_cursor_older_than_retention_is_clamped_and_reported() {
        let now = t("2026-11-21T12:00:00Z");
        let old = t("2026-11-01T00:00:00Z");
        let p = plan_listing(Some(old), now, RETENTION, Duration::from_secs(0), Duration::from_secs(300));
        assert_eq!(p.gap, Some((old, t("2026-11-14T12:05:00Z"))));
        assert_eq!(p.windows[0].0, t("2026-11-14T12:05:00Z"));
    }

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
}
