//! Graph rules as pure functions: windows, URLs, page parsing, errors, content keys.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::spec::StreamSpec;
use crate::sources::error::ApiError;
use crate::sources::record::hash16;

pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The first page's URL for a window (`subscription` fills ARM paths).
pub fn window_url(
    base: &str,
    spec: &StreamSpec,
    subscription: Option<&str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> String {
    let (lo, hi) = spec.ops;
    let q = |t: DateTime<Utc>| if spec.quote_times { format!("'{}'", fmt_time(t)) } else { fmt_time(t) };
    let mut filter = format!("{tf} {lo} {s} and {tf} {hi} {e}", tf = spec.time_field, s = q(start), e = q(end));
    if let Some(x) = spec.extra_filter {
        filter.push_str(" and ");
        filter.push_str(x);
    }
    let path = spec.path.replace("{subscription}", subscription.unwrap_or(""));
    let mut u = reqwest::Url::parse(&format!("{}{}", base.trim_end_matches('/'), path)).expect("validated base URL");
    {
        let mut qp = u.query_pairs_mut();
        if let Some((k, v)) = spec.query {
            qp.append_pair(k, v);
        }
        qp.append_pair("$filter", &filter);
        if spec.top > 0 {
            qp.append_pair("$top", &spec.top.to_string());
        }
    }
    u.to_string()
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow, default)]
    value: Vec<&'a RawValue>,
    #[serde(rename = "@odata.nextLink", default)]
    odata_next: Option<String>,
    #[serde(rename = "nextLink", default)]
    next: Option<String>,
}

/// Splits a page into raw records (byte ranges into `body`) and the next link, followed verbatim.
pub fn parse_page(body: &[u8]) -> Result<(Vec<std::ops::Range<usize>>, Option<String>), ApiError> {
    let p: Page<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::Transient(format!("page is not a Graph collection: {e}")))?;
    let base = body.as_ptr() as usize;
    let ranges = p
        .value
        .iter()
        .map(|r| {
            let start = r.get().as_ptr() as usize - base;
            start..start + r.get().len()
        })
        .collect();
    Ok((ranges, p.odata_next.or(p.next).filter(|n| !n.is_empty())))
}

/// Writes JSON with object keys sorted and no whitespace: a different key order or spacing is
/// not a change of content.
pub fn canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Keys of one record: `(content key, id key, id)`. The content key covers the id and the
/// canonical content, so an unchanged re-delivery is dropped and a changed one is forwarded.
pub fn record_keys(v: &serde_json::Value, id_fields: &[&str]) -> Option<([u8; 16], [u8; 16], String)> {
    let parts: Vec<String> =
        id_fields.iter().map(|f| v.get(*f).and_then(|x| x.as_str()).map(str::to_string)).collect::<Option<_>>()?;
    let id = parts.join("|");
    let mut c = String::new();
    canonical(v, &mut c);
    let id_key = hash16(&[b"graph-id", id.as_bytes()]);
    let key = hash16(&[b"graph-v", id.as_bytes(), c.as_bytes()]);
    Some((key, id_key, id))
}

/// Classifies a Graph error response.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> ApiError {
    let (code, message) = crate::sources::error::parse_error_body(body)
        .unwrap_or_else(|| (String::new(), String::from_utf8_lossy(body).chars().take(300).collect()));
    match (status, code.as_str()) {
        (429, _) => ApiError::Throttled { code: "HTTP 429".into(), retry_after },
        (408 | 500..=599, _) => ApiError::Transient(format!("HTTP {status} {code} {message}").trim().to_string()),
        (401, _) => ApiError::Unauthorized(format!("{code}: {message}")),
        (403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant") | (400, "AadPremiumLicenseRequired") => {
            ApiError::Unavailable(format!("the tenant has no Microsoft Entra ID P1/P2 licence ({code})"))
        }
        (403, _) => ApiError::Unavailable(format!("permission missing ({code}: {message})")),
        (400..=499, _) => ApiError::Rejected { status, code, message },
        _ => ApiError::Fatal { code: if code.is_empty() { format!("HTTP {status}") } else { code }, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::graph::spec::find;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn provisioning_uses_gt_lt_and_signins_filter_the_event_type() {
        let (s, e) = (t("2026-11-21T09:00:00Z"), t("2026-11-21T10:00:00Z"));
        let u = window_url("https://graph.microsoft.com", find("provisioning").unwrap(), None, s, e);
        let u = reqwest::Url::parse(&u).unwrap();
        let f: String = u.query_pairs().find(|(k, _)| k == "$filter").unwrap().1.into();
        assert_eq!(f, "activityDateTime gt 2026-11-21T09:00:00Z and activityDateTime lt 2026-11-21T10:00:00Z");
        let u = window_url("https://graph.microsoft.com", find("signins_service_principal").unwrap(), None, s, e);
        assert!(u.contains("/beta/auditLogs/signIns"));
        assert!(
            reqwest::Url::parse(&u)
                .unwrap()
                .query_pairs()
                .any(|(k, v)| k == "$filter" && v.ends_with("any(t: t eq 'servicePrincipal')"))
        );
    }

    #[test]
    fn azure_activity_quotes_times_and_names_the_subscription() {
        let (s, e) = (t("2026-11-21T09:00:00Z"), t("2026-11-21T10:00:00Z"));
        let u = window_url("https://management.azure.com", find("azure_activity").unwrap(), Some("sub-1"), s, e);
        let u = reqwest::Url::parse(&u).unwrap();
        assert_eq!(u.path(), "/subscriptions/sub-1/providers/Microsoft.Insights/eventtypes/management/values");
        let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
        assert_eq!(q["api-version"], "2015-04-01");
        assert_eq!(
            q["$filter"],
            "eventTimestamp ge '2026-11-21T09:00:00Z' and eventTimestamp le '2026-11-21T10:00:00Z'"
        );
        assert!(!q.contains_key("$top"));
    }

    #[test]
    fn message_trace_rows_are_keyed_by_id_and_recipient() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"id":"m1","recipientAddress":"a@x","status":"delivered"}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"id":"m1","recipientAddress":"b@x","status":"delivered"}"#).unwrap();
        let (_, ia, id) = record_keys(&a, &["id", "recipientAddress"]).unwrap();
        let (_, ib, _) = record_keys(&b, &["id", "recipientAddress"]).unwrap();
        assert_ne!(ia, ib);
        assert_eq!(id, "m1|a@x");
    }

    #[test]
    fn key_order_is_not_a_change_but_content_is() {
        let a: serde_json::Value = serde_json::from_str(r#"{"id":"x","b":{"d":1,"c":[1,2]},"a":"s"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "a":"s", "b":{"c":[1,2],"d":1}, "id":"x" }"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"id":"x","b":{"d":2,"c":[1,2]},"a":"s"}"#).unwrap();
        let (ka, ia, _) = record_keys(&a, &["id"]).unwrap();
        let (kb, ib, _) = record_keys(&b, &["id"]).unwrap();
        let (kc, ic, _) = record_keys(&c, &["id"]).unwrap();
        assert_eq!(ka, kb);
        assert_ne!(ka, kc);
        assert!(ia == ib && ib == ic);
    }

    #[test]
    fn licence_and_permission_refusals_are_unavailable_not_fatal() {
        let body = br#"{"error":{"code":"Authentication_RequestFromNonPremiumTenantOrB2CTenant","message":"Neither tenant is B2C or tenant doesn't have premium license"}}"#;
        assert!(matches!(classify(403, body, None), ApiError::Unavailable(m) if m.contains("P1/P2")));
        let body = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}}"#;
        assert!(matches!(classify(403, body, None), ApiError::Unavailable(_)));
        assert!(matches!(
            classify(429, b"", Some(Duration::from_secs(7))),
            ApiError::Throttled { retry_after: Some(_), .. }
        ));
        assert!(matches!(
            classify(400, br#"{"error":{"code":"BadRequest","message":"x"}}"#, None),
            ApiError::Rejected { status: 400, .. }
        ));
        assert!(matches!(classify(404, b"", None), ApiError::Rejected { status: 404, .. }));
    }
}
