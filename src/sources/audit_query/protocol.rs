//! The audit log query API's rules as pure functions (`shared/reference/microsoft-apis.md` §5
//! and §9): URLs, the create body, the query's status, record pages, and how a window splits.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::ApiVersion;
use crate::sources::error::ApiError;
use crate::store::BackfillFilters;

pub fn queries_url(base: &str, v: ApiVersion) -> String {
    format!("{}/{}/security/auditLog/queries", base.trim_end_matches('/'), v.path())
}

pub fn query_url(base: &str, v: ApiVersion, id: &str) -> String {
    format!("{}/{}", queries_url(base, v), url_segment(id))
}

pub fn records_url(base: &str, v: ApiVersion, id: &str) -> String {
    format!("{}/records", query_url(base, v, id))
}

/// A query id comes from Microsoft: it goes into a path segment, so anything but the
/// characters of a GUID is escaped, and it can never climb out of the path.
fn url_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn fmt_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The body of `POST /security/auditLog/queries` for `[start, end)`.
pub fn create_body(job: i64, start_ms: i64, end_ms: i64, f: &BackfillFilters) -> String {
    let mut body = serde_json::json!({
        "displayName": display_name(job, start_ms, end_ms),
        "filterStartDateTime": fmt_time(start_ms),
        "filterEndDateTime": fmt_time(end_ms),
    });
    let m = body.as_object_mut().expect("an object");
    if !f.record_types.is_empty() {
        m.insert("recordTypeFilters".into(), serde_json::json!(f.record_types));
    }
    if !f.operations.is_empty() {
        m.insert("operationFilters".into(), serde_json::json!(f.operations));
    }
    if !f.users.is_empty() {
        m.insert("userPrincipalNameFilters".into(), serde_json::json!(f.users));
    }
    body.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryStatus {
    NotStarted,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// `unknownFutureValue` or anything newer: waited on like a running query.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: String,
    pub status: QueryStatus,
    /// `isRecordCountLimitExceeded`: `None` where the version does not say (treated as unknown).
    pub limit_exceeded: Option<bool>,
    pub record_limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    is_record_count_limit_exceeded: Option<bool>,
    #[serde(default)]
    record_count_limit: Option<u64>,
}

pub fn parse_query(body: &[u8]) -> Result<Query, ApiError> {
    let q: RawQuery = serde_json::from_slice(body)
        .map_err(|e| ApiError::Transient(format!("audit log query answer is not a query: {e}")))?;
    if q.id.is_empty() {
        return Err(ApiError::Transient("audit log query answer has no id".into()));
    }
    let status = match q.status.as_str() {
        "notStarted" => QueryStatus::NotStarted,
        "running" => QueryStatus::Running,
        "succeeded" => QueryStatus::Succeeded,
        "failed" => QueryStatus::Failed,
        "cancelled" => QueryStatus::Cancelled,
        _ => QueryStatus::Other,
    };
    Ok(Query { id: q.id, status, limit_exceeded: q.is_record_count_limit_exceeded, record_limit: q.record_count_limit })
}

/// A query as listed: what it asked for, to recognise one this collector created but did not
/// get to record (a crash right after the create).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub filter_start_date_time: Option<String>,
    #[serde(default)]
    pub filter_end_date_time: Option<String>,
    #[serde(default)]
    pub record_type_filters: Vec<String>,
    #[serde(default)]
    pub operation_filters: Vec<String>,
    #[serde(default)]
    pub user_principal_name_filters: Vec<String>,
}

impl Listed {
    /// The same name and the same request: the query this window would create.
    pub fn is_for(&self, job: i64, start_ms: i64, end_ms: i64, f: &BackfillFilters) -> bool {
        let same_time = |t: &Option<String>, ms: i64| {
            t.as_deref().and_then(|x| DateTime::parse_from_rfc3339(x).ok()).map(|x| x.timestamp_millis() / 1000)
                == Some(ms / 1000)
        };
        self.display_name == display_name(job, start_ms, end_ms)
            && same_time(&self.filter_start_date_time, start_ms)
            && same_time(&self.filter_end_date_time, end_ms)
            && self.record_type_filters == f.record_types
            && self.operation_filters == f.operations
            && self.user_principal_name_filters == f.users
            && !matches!(self.status.as_str(), "failed" | "cancelled")
    }
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    value: Vec<Listed>,
    #[serde(rename = "@odata.nextLink", default)]
    next: Option<String>,
}

pub fn parse_list(body: &[u8]) -> Result<(Vec<Listed>, Option<String>), ApiError> {
    let p: ListPage = serde_json::from_slice(body)
        .map_err(|e| ApiError::Transient(format!("query list is not a collection: {e}")))?;
    Ok((p.value, p.next.filter(|n| !n.is_empty())))
}

pub fn display_name(job: i64, start_ms: i64, end_ms: i64) -> String {
    format!("auditkeeper backfill {job} {}..{}", fmt_time(start_ms), fmt_time(end_ms))
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    value: Vec<&'a RawValue>,
    #[serde(rename = "@odata.nextLink", default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "auditData", borrow, default)]
    audit_data: Option<&'a RawValue>,
}

/// One record of a page: the range of what is forwarded (the `auditData` object, the record the
/// Management Activity API delivers; the whole item if it carries none).
pub struct PageItem {
    pub raw: std::ops::Range<usize>,
    pub has_audit_data: bool,
    /// The item's other fields (`id`, `createdDateTime`, `auditLogRecordType`, `operation`,
    /// `userPrincipalName`, ...) as one JSON object, for the envelope option.
    pub envelope: Option<String>,
}

/// The item without its `auditData`, written compactly.
fn envelope_of(item: &RawValue) -> Option<String> {
    let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(item.get()).ok()?;
    m.remove("auditData");
    serde_json::to_string(&m).ok()
}

/// Splits a records page. A page that does not parse (users report malformed JSON) is an error
/// the caller retries, never a page skipped.
pub fn parse_records(body: &[u8]) -> Result<(Vec<PageItem>, Option<String>), ApiError> {
    let p: Page<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::Transient(format!("records page is not valid JSON: {e}")))?;
    let base = body.as_ptr() as usize;
    let range = |r: &RawValue| {
        let s = r.get().as_ptr() as usize - base;
        s..s + r.get().len()
    };
    let mut items = Vec::with_capacity(p.value.len());
    for v in p.value {
        let item: Item<'_> = serde_json::from_str(v.get())
            .map_err(|e| ApiError::Transient(format!("a record of the page is not an object: {e}")))?;
        match item.audit_data.filter(|a| a.get().starts_with('{')) {
            Some(a) => items.push(PageItem { raw: range(a), has_audit_data: true, envelope: envelope_of(v) }),
            None => items.push(PageItem { raw: range(v), has_audit_data: false, envelope: None }),
        }
    }
    Ok((items, p.next.filter(|n| !n.is_empty())))
}

/// Reading a query's records before it finished answers 400 "The query is not ready." [3P].
pub fn is_not_ready(e: &ApiError) -> bool {
    matches!(e, ApiError::Rejected { status: 400, message, .. } if message.to_ascii_lowercase().contains("not ready"))
}

/// Where a window splits in two: the middle, on a whole second; `None` once a half would be
/// shorter than `min_ms`.
pub fn split_point(start_ms: i64, end_ms: i64, min_ms: i64) -> Option<i64> {
    let mid = start_ms + (end_ms - start_ms) / 2;
    let mid = mid - mid.rem_euclid(1000);
    (mid - start_ms >= min_ms.max(1000) && end_ms - mid >= min_ms.max(1000)).then_some(mid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_version_and_escape_the_query_id() {
        assert_eq!(
            queries_url("https://graph.microsoft.com/", ApiVersion::Beta),
            "https://graph.microsoft.com/beta/security/auditLog/queries"
        );
        assert_eq!(
            records_url("https://g", ApiVersion::V1, "ab-12"),
            "https://g/v1.0/security/auditLog/queries/ab-12/records"
        );
        assert_eq!(
            query_url("https://g", ApiVersion::V1, "../x?y"),
            "https://g/v1.0/security/auditLog/queries/%2E%2E%2Fx%3Fy"
        );
    }

    #[test]
    fn the_body_carries_the_window_and_only_the_filters_given() {
        let f = BackfillFilters { operations: vec!["MailItemsAccessed".into()], ..Default::default() };
        let b: serde_json::Value = serde_json::from_str(&create_body(3, 0, 86_400_000, &f)).unwrap();
        assert_eq!(b["filterStartDateTime"], "1970-01-01T00:00:00Z");
        assert_eq!(b["filterEndDateTime"], "1970-01-02T00:00:00Z");
        assert_eq!(b["operationFilters"], serde_json::json!(["MailItemsAccessed"]));
        assert!(b.get("recordTypeFilters").is_none() && b.get("userPrincipalNameFilters").is_none());
    }

    #[test]
    fn a_listed_query_is_recognised_by_its_name_and_its_whole_request() {
        let f = BackfillFilters { users: vec!["a@x".into()], ..Default::default() };
        let body: serde_json::Value = serde_json::from_str(&create_body(4, 0, 3_600_000, &f)).unwrap();
        let mut listed: Listed = serde_json::from_value(body).unwrap();
        listed.status = "running".into();
        assert!(listed.is_for(4, 0, 3_600_000, &f));
        assert!(!listed.is_for(5, 0, 3_600_000, &f), "another job");
        assert!(!listed.is_for(4, 0, 3_600_000, &BackfillFilters::default()), "other filters");
        listed.status = "failed".into();
        assert!(!listed.is_for(4, 0, 3_600_000, &f), "a failed query is not taken over");
    }

    #[test]
    fn a_query_says_whether_it_was_truncated_or_does_not_say() {
        let q =
            parse_query(br#"{"id":"q1","status":"succeeded","isRecordCountLimitExceeded":true,"recordCountLimit":10}"#)
                .unwrap();
        assert_eq!((q.status, q.limit_exceeded, q.record_limit), (QueryStatus::Succeeded, Some(true), Some(10)));
        let q = parse_query(br#"{"id":"q1","status":"running"}"#).unwrap();
        assert_eq!((q.status, q.limit_exceeded), (QueryStatus::Running, None));
        assert_eq!(parse_query(br#"{"id":"q","status":"unknownFutureValue"}"#).unwrap().status, QueryStatus::Other);
        assert!(parse_query(br#"{"status":"running"}"#).is_err());
    }

    #[test]
    fn a_page_yields_the_audit_data_bytes_verbatim_and_a_broken_page_is_an_error() {
        let body = br#"{"value":[{"id":"a","auditData":{ "Id" : "a","CreationTime":"2026-01-01T00:00:00"}},{"id":"b"}],"@odata.nextLink":"https://g/next"}"#;
        let (items, next) = parse_records(body).unwrap();
        assert_eq!(&body[items[0].raw.clone()], br#"{ "Id" : "a","CreationTime":"2026-01-01T00:00:00"}"#);
        assert!(items[0].has_audit_data && !items[1].has_audit_data);
        assert_eq!(items[0].envelope.as_deref(), Some(r#"{"id":"a"}"#), "the wrapper's fields, without auditData");
        assert_eq!(&body[items[1].raw.clone()], br#"{"id":"b"}"#);
        assert_eq!(next.as_deref(), Some("https://g/next"));
        assert!(parse_records(br#"{"value":[{"id":"a","auditData":{"Id":"#).is_err());
    }

    #[test]
    fn windows_halve_on_whole_seconds_down_to_the_minimum() {
        assert_eq!(split_point(0, 86_400_000, 900_000), Some(43_200_000));
        assert_eq!(split_point(0, 1_800_000, 900_000), Some(900_000));
        assert_eq!(split_point(0, 1_700_000, 900_000), None);
        assert_eq!(split_point(0, 3_001, 1), Some(1_000));
    }
}
