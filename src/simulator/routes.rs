//! HTTP handlers of the simulated Microsoft endpoints, with the documented quirks: AF429 as
//! HTTP 403, `NextPageUri` pointing at `/api/v1/`, window rules, AF20022/AF20051, a skewed `Date`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::tenant::Tenant;

type S = Arc<Tenant>;

pub fn router(tenant: S) -> Router {
    let api = Router::new()
        .route("/api/{ver}/{tenant}/activity/feed/subscriptions/list", get(list_subscriptions))
        .route("/api/{ver}/{tenant}/activity/feed/subscriptions/start", post(start_subscription))
        .route("/api/{ver}/{tenant}/activity/feed/subscriptions/content", get(list_content))
        .route("/api/{ver}/{tenant}/activity/feed/audit/{content_id}", get(fetch_blob))
        .layer(middleware::from_fn_with_state(tenant.clone(), faults));
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{ver}/auditLogs/{kind}", get(graph_logs))
        .route("/v1.0/identityProtection/riskDetections", get(risk_detections))
        .route("/v1.0/security/alerts_v2", get(alerts_v2))
        .route("/v1.0/admin/exchange/tracing/messageTraces", get(message_traces))
        .route("/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values", get(activity_log))
        .route("/_sim/truth", get(truth))
        .route("/_sim/stats", get(stats))
        .merge(api)
        .layer(middleware::from_fn_with_state(tenant.clone(), server_date))
        .with_state(tenant)
}

fn af(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The `Date` header follows the simulator's (possibly skewed) clock.
async fn server_date(State(t): State<S>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let now: std::time::SystemTime = t.now().into();
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        resp.headers_mut().insert(header::DATE, v);
    }
    resp
}

/// Latency, throttling bursts (AF429 as 403) and 5xx bursts, plus PublisherIdentifier accounting.
async fn faults(State(t): State<S>, req: Request, next: Next) -> Response {
    let s = &t.scenario;
    if !s.latency.is_zero() {
        tokio::time::sleep(s.latency).await;
    }
    let n = t.next_request();
    let has_publisher = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.to_ascii_lowercase().starts_with("publisheridentifier=")));
    t.stats_mut(|st| {
        st.api_requests += 1;
        if !has_publisher {
            st.requests_without_publisher += 1;
        }
    });
    if s.throttle_every > 0 && n % s.throttle_every < s.throttle_burst {
        t.stats_mut(|st| st.throttled += 1);
        // Microsoft's own troubleshooting page shows this single-quoted body; half the time send it.
        let body = if n % 2 == 0 {
            "{'error':{'code':'AF429','message':'Too many requests. Method=GetBlob, PublisherId=00000000-0000-0000-0000-000000000000'}}".to_string()
        } else {
            r#"{"error":{"code":"AF429","message":"Too many requests."}}"#.to_string()
        };
        let mut r = (StatusCode::FORBIDDEN, body).into_response();
        if n % 3 == 0 {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        return r;
    }
    if s.error_every > 0 && (n + 7) % s.error_every < s.error_burst {
        t.stats_mut(|st| st.server_errors += 1);
        return if n % 2 == 0 {
            af(StatusCode::INTERNAL_SERVER_ERROR, "AF50000", "An internal error occurred.")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
        };
    }
    next.run(req).await
}

fn check_auth(t: &Tenant, headers: &HeaderMap, tenant: &str) -> Result<(), Response> {
    let tok = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match tok {
        Some(tok) if t.token_valid(tok) => {}
        _ => {
            return Err(af(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token is missing, invalid or expired.",
            ));
        }
    }
    if !tenant.eq_ignore_ascii_case(&t.scenario.tenant_id) {
        return Err(af(
            StatusCode::BAD_REQUEST,
            "AF20010",
            "The tenant ID in the URL does not match the tenant of the token.",
        ));
    }
    Ok(())
}

async fn token(State(t): State<S>, Path(tenant): Path<String>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let s = &t.scenario;
    if !tenant.eq_ignore_ascii_case(&s.tenant_id) {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error":"invalid_request","error_description":format!("AADSTS90002: Tenant '{tenant}' not found.")}))).into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || !form.get("scope").is_some_and(|sc| sc.ends_with("/.default"))
    {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error":"invalid_request","error_description":"AADSTS900144: The request body must contain grant_type=client_credentials and a /.default scope."}))).into_response();
    }
    if form.get("client_id") != Some(&s.client_id) || form.get("client_secret") != Some(&s.client_secret) {
        return (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}))).into_response();
    }
    axum::Json(serde_json::json!({
        "token_type": "Bearer",
        "expires_in": s.token_lifetime.as_secs(),
        "ext_expires_in": s.token_lifetime.as_secs(),
        "access_token": t.issue_token(),
    }))
    .into_response()
}

async fn list_subscriptions(
    State(t): State<S>,
    Path((_v, tenant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&t, &headers, &tenant) {
        return r;
    }
    let v: Vec<_> = t
        .subscriptions()
        .into_iter()
        .map(|(ct, s)| serde_json::json!({"contentType": t.scenario.content_types[ct], "status": if s.enabled {"enabled"} else {"disabled"}, "webhook": null}))
        .collect();
    axum::Json(v).into_response()
}

async fn start_subscription(
    State(t): State<S>,
    Path((_v, tenant)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&t, &headers, &tenant) {
        return r;
    }
    let Some(ct) = q.get("contentType").and_then(|c| t.ct_index(c)) else {
        return af(StatusCode::BAD_REQUEST, "AF20020", "The specified content type is not valid.");
    };
    t.start_subscription(ct);
    axum::Json(serde_json::json!({"contentType": t.scenario.content_types[ct], "status": "enabled", "webhook": null}))
        .into_response()
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return Some(n.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}

async fn list_content(
    State(t): State<S>,
    Path((_v, tenant)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&t, &headers, &tenant) {
        return r;
    }
    t.stats_mut(|s| s.list_requests += 1);
    let Some(ct) = q.get("contentType").and_then(|c| t.ct_index(c)) else {
        return af(StatusCode::BAD_REQUEST, "AF20020", "The specified content type is not valid.");
    };
    if t.scenario.forbidden_content_types.iter().any(|c| c == &t.scenario.content_types[ct]) {
        return af(
            StatusCode::FORBIDDEN,
            "AF10001",
            "The permission set (ActivityFeed.Read) sent in the request does not include the expected permission.",
        );
    }
    match t.subscription(ct) {
        None => {
            return af(StatusCode::BAD_REQUEST, "AF20022", "No subscription found for the specified content type.");
        }
        Some(s) if !s.enabled => {
            return af(StatusCode::BAD_REQUEST, "AF20023", "The subscription was disabled by an administrator.");
        }
        Some(_) => {}
    }
    let now = t.now();
    let (start, end) = match (q.get("startTime"), q.get("endTime")) {
        (None, None) => (now - chrono::Duration::hours(24), now),
        (Some(a), Some(b)) => match (parse_time(a), parse_time(b)) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return af(StatusCode::BAD_REQUEST, "AF20002", "startTime or endTime has an invalid format.");
            }
        },
        _ => {
            return af(StatusCode::BAD_REQUEST, "AF20001", "Both startTime and endTime must be specified, or neither.");
        }
    };
    if start >= end {
        return af(StatusCode::BAD_REQUEST, "AF20055", "Start time must be before end time.");
    }
    if end - start > chrono::Duration::hours(24) || start < now - chrono::Duration::days(7) {
        return af(
            StatusCode::BAD_REQUEST,
            "AF20055",
            "Start time and end time must both be specified (or both omitted) and they must be more than 24 hours apart or less than 7 days in the past.",
        );
    }
    let all = t.listable(ct, start, end);
    let offset: usize = match q.get("nextPage").map(|p| p.strip_prefix("p").and_then(|n| n.parse().ok())) {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return af(StatusCode::BAD_REQUEST, "AF20031", "Invalid nextPage."),
    };
    let page = t.scenario.page_size.max(1);
    // HTTP/2 carries the authority in the URI, HTTP/1.1 in Host.
    let host = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    let items: Vec<_> = all
        .iter()
        .skip(offset)
        .take(page)
        .map(|b| {
            serde_json::json!({
                "contentType": t.scenario.content_types[ct],
                "contentId": b.content_id,
                "contentUri": format!("https://{host}/api/v1.0/{}/activity/feed/audit/{}", t.scenario.tenant_id, b.content_id),
                "contentCreated": b.created.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "contentExpiration": (b.created + chrono::Duration::days(7)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            })
        })
        .collect();
    let mut resp = axum::Json(items).into_response();
    if offset + page < all.len() {
        // The documented sample points next pages at /api/v1/, not /api/v1.0/.
        let mut u = url::Url::parse(&format!(
            "https://{host}/api/v1/{}/activity/feed/subscriptions/content",
            t.scenario.tenant_id
        ))
        .expect("url");
        {
            let mut qp = u.query_pairs_mut();
            for k in ["contentType", "startTime", "endTime", "PublisherIdentifier"] {
                if let Some(v) = q.get(k) {
                    qp.append_pair(k, v);
                }
            }
            qp.append_pair("nextPage", &format!("p{}", offset + page));
        }
        if let Ok(v) = HeaderValue::from_str(u.as_str()) {
            resp.headers_mut().insert("NextPageUri", v);
        }
    }
    resp
}

async fn fetch_blob(
    State(t): State<S>,
    Path((_v, tenant, content_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&t, &headers, &tenant) {
        return r;
    }
    t.stats_mut(|s| s.blob_fetches += 1);
    let Some(b) = t.find_blob(&content_id) else {
        return af(StatusCode::BAD_REQUEST, "AF20050", "The specified content does not exist.");
    };
    if b.expired || t.now() > b.created + chrono::Duration::days(7) {
        return af(
            StatusCode::BAD_REQUEST,
            "AF20051",
            "Content requested with the key has already expired. Content older than 7 days cannot be retrieved.",
        );
    }
    let body = t.blob_body(&b);
    t.note_fetch(&content_id);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body))
        .expect("response")
}

async fn truth(State(t): State<S>) -> Response {
    axum::Json(t.truth()).into_response()
}

async fn stats(State(t): State<S>) -> Response {
    axum::Json(t.stats()).into_response()
}

fn graph_err(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message, "innerError": {"date": Utc::now().to_rfc3339()}}}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// How one simulated collection endpoint filters and pages.
struct Endpoint {
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
    let (time_field, only_gt_lt, base_kind) = match kind.as_str() {
        "signIns" => ("createdDateTime", false, 0),
        "directoryAudits" => ("activityDateTime", false, 4),
        "provisioning" => ("activityDateTime", true, 5),
        _ => return graph_err(StatusCode::NOT_FOUND, "ResourceNotFound", "Resource not found."),
    };
    let ep = Endpoint {
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
    let all = t.graph.query(kind_ix, lo, hi, now);
    let offset: usize = q.get("$skiptoken").and_then(|v| v.parse().ok()).unwrap_or(0);
    // Alternate responses use another key order: a re-read must not look like a change.
    let reorder = t.next_request() % 2 == 1;
    let items: Vec<String> =
        all.iter().skip(offset).take(top).map(|e| render(t.graph.seed(), e, e.version(now), reorder)).collect();
    let mut body = format!("{{\"value\":[{}]", items.join(","));
    if offset + top < all.len() {
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
            .unwrap_or_default();
        let mut u = url::Url::parse(&format!("https://{host}{}", uri.path())).expect("url");
        {
            let mut qp = u.query_pairs_mut();
            for k in ["api-version", "$filter", "$top"] {
                if let Some(v) = q.get(k) {
                    qp.append_pair(k, v);
                }
            }
            qp.append_pair("$skiptoken", &(offset + top).to_string());
        }
        let key = if ep.arm { "nextLink" } else { "@odata.nextLink" };
        body.push_str(&format!(",\"{key}\":{}", serde_json::to_string(u.as_str()).expect("string")));
    }
    body.push('}');
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn check_graph_auth(t: &Tenant, headers: &HeaderMap) -> Result<(), Response> {
    let tok = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match tok {
        Some(tok) if t.token_valid(tok) => Ok(()),
        _ => {
            Err(graph_err(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Access token is empty or invalid."))
        }
    }
}
