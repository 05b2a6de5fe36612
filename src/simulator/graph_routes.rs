//! HTTP handlers of the simulated Graph and ARM activity logs: one filter-and-page routine
//! (`serve`) configured per endpoint with its time field, operators, page size, licence and
//! window rules, and the per-API request limits.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};

use super::tenant::Tenant;

type S = Arc<Tenant>;

pub fn router() -> Router<S> {
    Router::new()
        .route("/{ver}/auditLogs/{kind}", get(graph_logs))
        .route("/v1.0/identityProtection/riskDetections", get(risk_detections))
        .route("/v1.0/security/alerts_v2", get(alerts_v2))
        .route("/v1.0/admin/exchange/tracing/messageTraces", get(message_traces))
        .route("/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values", get(activity_log))
}

pub(super) fn graph_err(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message, "innerError": {"date": Utc::now().to_rfc3339()}}}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// How one simulated collection endpoint filters and pages.
struct Endpoint {
    /// The collector's name for the stream family (`signins`, `directory_audits`, ...).
    stream: &'static str,
    kind: usize,
    time_field: &'static str,
    /// Provisioning accepts only gt/lt.
    only_gt_lt: bool,
    max_top: usize,
    needs_premium: bool,
    /// Message trace: both bounds required, at most this many days apart, at most 90 days back.
    max_window_days: Option<i64>,
    /// ARM: quoted timestamps, `nextLink`, `api-version` required.
    arm: bool,
    /// `auditLogs/*` count against 5 requests per 10 s; message trace against 100 per 5 min.
    limit: Option<(usize, u64)>,
}

/// `GET /{v1.0|beta}/auditLogs/{signIns|directoryAudits|provisioning}`.
async fn graph_logs(
    State(t): State<S>,
    Path((ver, kind)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let (stream, time_field, only_gt_lt, base_kind) = match kind.as_str() {
        "signIns" => ("signins", "createdDateTime", false, 0),
        "directoryAudits" => ("directory_audits", "activityDateTime", false, 4),
        "provisioning" => ("provisioning", "activityDateTime", true, 5),
        _ => return graph_err(StatusCode::NOT_FOUND, "ResourceNotFound", "Resource not found."),
    };
    let ep = Endpoint {
        stream,
        kind: base_kind,
        time_field,
        only_gt_lt,
        max_top: 1000,
        needs_premium: kind == "signIns",
        max_window_days: None,
        arm: false,
        limit: Some((5, 10)),
    };
    serve(&t, ep, Some(&ver), &q, &uri, &headers).await
}

async fn risk_detections(
    State(t): State<S>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let ep = Endpoint {
        stream: "risk_detections",
        kind: 6,
        time_field: "lastUpdatedDateTime",
        only_gt_lt: false,
        max_top: 500,
        needs_premium: true,
        max_window_days: None,
        arm: false,
        limit: None,
    };
    serve(&t, ep, None, &q, &uri, &headers).await
}

async fn alerts_v2(
    State(t): State<S>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let ep = Endpoint {
        stream: "security_alerts",
        kind: 7,
        time_field: "lastUpdateDateTime",
        only_gt_lt: false,
        max_top: 2000,
        needs_premium: false,
        max_window_days: None,
        arm: false,
        limit: None,
    };
    serve(&t, ep, None, &q, &uri, &headers).await
}

async fn message_traces(
    State(t): State<S>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let ep = Endpoint {
        stream: "message_trace",
        kind: 8,
        time_field: "receivedDateTime",
        only_gt_lt: false,
        max_top: 5000,
        needs_premium: false,
        max_window_days: Some(10),
        arm: false,
        limit: Some((100, 300)),
    };
    serve(&t, ep, None, &q, &uri, &headers).await
}

async fn activity_log(
    State(t): State<S>,
    Path(sub): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if q.get("api-version").map(String::as_str) != Some("2015-04-01") {
        return graph_err(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required.",
        );
    }
    if sub != super::records::guid(t.scenario.seed, 77) {
        return graph_err(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            &format!("The subscription '{sub}' could not be found."),
        );
    }
    let ep = Endpoint {
        stream: "azure_activity",
        kind: 9,
        time_field: "eventTimestamp",
        only_gt_lt: false,
        max_top: 1000,
        needs_premium: false,
        max_window_days: None,
        arm: true,
        limit: None,
    };
    serve(&t, ep, None, &q, &uri, &headers).await
}

async fn serve(
    t: &Tenant,
    ep: Endpoint,
    ver: Option<&str>,
    q: &HashMap<String, String>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    use super::graph::{KINDS, render};
    if let Err(r) = check_graph_auth(t, headers) {
        return r;
    }
    if let Some((n, secs)) = ep.limit
        && let Some(wait) = t.graph.admit(ep.kind == 8, n, secs, t.scenario.graph_rate_limit)
    {
        let mut r = graph_err(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Too many requests.");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    if ep.needs_premium && !t.scenario.premium {
        return graph_err(
            StatusCode::FORBIDDEN,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        );
    }
    let top: usize = q.get("$top").and_then(|v| v.parse().ok()).unwrap_or(ep.max_top.min(1000));
    if top == 0 || top > ep.max_top {
        return graph_err(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Invalid $top: the maximum page size is {}.", ep.max_top),
        );
    }
    let mut lo = (DateTime::<Utc>::MIN_UTC, true);
    let mut hi = (DateTime::<Utc>::MAX_UTC, true);
    let (mut has_lo, mut has_hi) = (false, false);
    let mut event_type = "interactiveUser".to_string();
    for clause in q.get("$filter").map(String::as_str).unwrap_or("").split(" and ").filter(|c| !c.trim().is_empty()) {
        let c = clause.trim();
        if let Some(rest) = c.strip_prefix("signInEventTypes/any(t: t eq '") {
            // v1.0 has only interactive sign-ins; beta honours the event-type filter.
            if ver == Some("beta") {
                event_type = rest.trim_end_matches("')").to_string();
            }
            continue;
        }
        let parts: Vec<&str> = c.splitn(3, ' ').collect();
        let (Some(field), Some(op), Some(value)) = (parts.first(), parts.get(1), parts.get(2)) else {
            return graph_err(StatusCode::BAD_REQUEST, "BadRequest", &format!("Invalid filter clause: {c}"));
        };
        if *field != ep.time_field {
            return graph_err(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Invalid filter clause: unsupported property {field}"),
            );
        }
        if ep.only_gt_lt && matches!(*op, "ge" | "le") {
            return graph_err(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Invalid filter clause: the operator '{op}' is not supported; use gt or lt"),
            );
        }
        let value = if ep.arm {
            match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(v) => v,
                None => {
                    return graph_err(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "The $filter is invalid: timestamps must be quoted.",
                    );
                }
            }
        } else {
            value
        };
        let Ok(v) = DateTime::parse_from_rfc3339(value) else {
            return graph_err(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Invalid filter clause: bad date {value}"),
            );
        };
        let v = v.with_timezone(&Utc);
        match *op {
            "ge" | "gt" => (lo, has_lo) = ((v, *op == "ge"), true),
            "le" | "lt" => (hi, has_hi) = ((v, *op == "le"), true),
            _ => {
                return graph_err(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Invalid filter clause: operator {op}"),
                );
            }
        }
    }
    let now = t.now();
    if let Some(days) = ep.max_window_days {
        if !(has_lo && has_hi) {
            return graph_err(StatusCode::BAD_REQUEST, "BadRequest", "Both receivedDateTime bounds are required.");
        }
        if hi.0 - lo.0 > chrono::Duration::days(days) {
            return graph_err(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("The date range must not exceed {days} days."),
            );
        }
        if lo.0 < now - chrono::Duration::days(90) {
            return graph_err(StatusCode::BAD_REQUEST, "BadRequest", "The start date must be within the last 90 days.");
        }
    }
    let kind_ix = if ep.kind == 0 {
        match KINDS.iter().position(|k| *k == event_type) {
            Some(i) if i < 4 => i,
            _ => {
                return graph_err(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Invalid sign-in event type {event_type}"),
                );
            }
        }
    } else {
        ep.kind
    };
    if q.contains_key("$skiptoken") && t.attack.refuse_skiptoken(&t.scenario.attacks) {
        return graph_err(StatusCode::BAD_REQUEST, "BadRequest", "The skip token is expired or invalid.");
    }
    let all = t.graph.query(kind_ix, lo, hi, now);
    let offset: usize = q.get("$skiptoken").and_then(|v| v.parse().ok()).unwrap_or(0);
    // Alternate responses use another key order: a re-read must not look like a change.
    let reorder = t.next_request() % 2 == 1;
    let items: Vec<String> =
        all.iter().skip(offset).take(top).map(|e| render(t.graph.seed(), e, e.version(now), reorder)).collect();
    let mut body = format!("{{\"value\":[{}]", items.join(","));
    let looping = t.scenario.attacks.loops(ep.stream);
    if offset + top < all.len() || looping {
        let next = if looping { offset } else { offset + top };
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
            .unwrap_or_default();
        let base = match t.scenario.attacks.foreign_base(ep.stream) {
            Some(b) => b.trim_end_matches('/').to_string(),
            None => format!("https://{host}"),
        };
        let mut u = url::Url::parse(&format!("{base}{}", uri.path())).expect("url");
        {
            let mut qp = u.query_pairs_mut();
            for k in ["api-version", "$filter", "$top"] {
                if let Some(v) = q.get(k) {
                    qp.append_pair(k, v);
                }
            }
            qp.append_pair("$skiptoken", &next.to_string());
        }
        let key = if ep.arm { "nextLink" } else { "@odata.nextLink" };
        body.push_str(&format!(",\"{key}\":{}", serde_json::to_string(u.as_str()).expect("string")));
    }
    body.push('}');
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

// The error is the HTTP answer itself, returned at once; its size does not matter here.
#[allow(clippy::result_large_err)]
pub(super) fn check_graph_auth(t: &Tenant, headers: &HeaderMap) -> Result<(), Response> {
    let tok = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match tok {
        Some(tok) if t.token_valid(tok) => Ok(()),
        _ => {
            Err(graph_err(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Access token is empty or invalid."))
        }
    }
}
