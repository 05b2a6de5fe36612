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
        .route("/msi/token", get(managed_identity_token))
        .merge(super::graph_routes::router())
        .merge(super::audit_log_routes::router())
        .route("/_sim/truth", get(truth))
        .route("/_sim/stats", get(stats))
        .merge(api)
        .layer(middleware::from_fn_with_state(tenant.clone(), server_date))
        .layer(middleware::from_fn_with_state(tenant.clone(), hang))
        .with_state(tenant)
}

/// `attacks.hang`: the connection is up, the request read, and no answer ever comes.
async fn hang(State(t): State<S>, req: Request, next: Next) -> Response {
    if t.scenario.attacks.hang {
        t.stats_mut(|st| st.hung += 1);
        std::future::pending::<()>().await;
    }
    next.run(req).await
}

fn af(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The `Date` header follows the simulator's (possibly skewed) clock.
async fn server_date(State(t): State<S>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let a = &t.scenario.attacks;
    let ahead =
        if t.attack.bad_date(a) { chrono::Duration::seconds(a.bad_date_ahead_secs) } else { chrono::Duration::zero() };
    let now: std::time::SystemTime = (t.now() + ahead).into();
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
    let a = &t.scenario.attacks;
    if let Some(ct) = &a.retry_after_content_type
        && req.uri().path().ends_with("/subscriptions/content")
        && req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == format!("contentType={ct}")))
    {
        t.stats_mut(|st| st.throttled += 1);
        let mut r = af(StatusCode::TOO_MANY_REQUESTS, "AF429", "Too many requests.");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(a.retry_after_secs));
        return r;
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

// The error is the HTTP answer itself, returned at once; its size does not matter here.
#[allow(clippy::result_large_err)]
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

async fn token(
    State(t): State<S>,
    Path(tenant): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
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
    // A client assertion (workload identity's federated token) stands in for the secret.
    let jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    if form.get("client_assertion_type").map(String::as_str) == Some(jwt_bearer) {
        let assertion = form.get("client_assertion").map(String::as_str).unwrap_or_default();
        // Entra checks `aud` against its own token endpoint, as the client addressed it.
        // HTTP/2 carries the host in :authority (the URI), HTTP/1.1 in Host.
        let host = uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
            .unwrap_or_default();
        let audience = format!("https://{host}/{tenant}/oauth2/v2.0/token");
        let signed = match s.client_certificate_pem.as_deref() {
            Some(pem) => super::assertion::verify(assertion, pem, &s.client_id, &audience, t.now().timestamp()),
            None => Err("AADSTS700027: no certificate is registered on the app".to_string()),
        };
        if form.get("client_id") != Some(&s.client_id) || (assertion != s.federated_token && signed.is_err()) {
            let why = if assertion.contains('.') {
                signed.err().unwrap_or_default()
            } else {
                "AADSTS700213: No matching federated identity record found for presented assertion.".to_string()
            };
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error":"invalid_client","error_description":why})),
            )
                .into_response();
        }
    } else if form.get("client_id") != Some(&s.client_id) || form.get("client_secret") != Some(&s.client_secret) {
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

/// The secret an App Service host puts in `IDENTITY_HEADER`; the simulator's stands in for it.
pub const IDENTITY_HEADER_VALUE: &str = "sim-identity-header-7f3a";

/// `GET /msi/token?api-version=2019-08-01&resource=…[&client_id=…]`: the App Service managed
/// identity endpoint (`IDENTITY_ENDPOINT`), which azure_identity's `ManagedIdentityCredential`
/// calls with the `X-IDENTITY-HEADER` secret. `expires_on` is a string of Unix seconds, as there.
async fn managed_identity_token(
    State(t): State<S>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("x-identity-header").and_then(|v| v.to_str().ok()) != Some(IDENTITY_HEADER_VALUE) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong X-IDENTITY-HEADER").into_response();
    }
    let Some(resource) = q.get("resource").filter(|r| !r.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "resource is required").into_response();
    };
    let who = match q.get("client_id") {
        Some(c) => format!("{resource} as {c}"),
        None => format!("{resource} as system-assigned"),
    };
    t.record_managed_identity_request(who);
    let expires_on = t.now().timestamp() + t.scenario.token_lifetime.as_secs() as i64;
    axum::Json(serde_json::json!({
        "access_token": t.issue_token(),
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
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
    // A tampered answer points its links at another listener.
    let base = match t.scenario.attacks.foreign_base(&t.scenario.content_types[ct]) {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!("https://{host}"),
    };
    let items: Vec<_> = all
        .iter()
        .skip(offset)
        .take(page)
        .map(|b| {
            serde_json::json!({
                "contentType": t.scenario.content_types[ct],
                "contentId": b.content_id,
                "contentUri": format!("{base}/api/v1.0/{}/activity/feed/audit/{}", t.scenario.tenant_id, b.content_id),
                "contentCreated": b.created.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "contentExpiration": (b.created + chrono::Duration::days(7)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            })
        })
        .collect();
    let mut resp = axum::Json(items).into_response();
    let looping = t.scenario.attacks.loops(&t.scenario.content_types[ct]);
    if offset + page < all.len() || looping {
        let next = if looping { offset } else { offset + page };
        // The documented sample points next pages at /api/v1/, not /api/v1.0/.
        let mut u =
            url::Url::parse(&format!("{base}/api/v1/{}/activity/feed/subscriptions/content", t.scenario.tenant_id))
                .expect("url");
        {
            let mut qp = u.query_pairs_mut();
            for k in ["contentType", "startTime", "endTime", "PublisherIdentifier"] {
                if let Some(v) = q.get(k) {
                    qp.append_pair(k, v);
                }
            }
            qp.append_pair("nextPage", &format!("p{next}"));
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
    if b.unavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, "The service is temporarily unavailable.").into_response();
    }
    if b.bomb {
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::from(t.attack.bomb(t.scenario.attacks.bomb_bytes)))
            .expect("response");
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
