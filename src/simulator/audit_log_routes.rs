//! HTTP handlers of the simulated audit log query API: create (201), status, record pages,
//! under `/{beta|v1.0}/security/auditLog/queries`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::audit_log::QueryRequest;
use super::graph_routes::{check_graph_auth, graph_err};
use super::tenant::Tenant;

type S = Arc<Tenant>;

pub fn router() -> Router<S> {
    Router::new()
        .route("/{ver}/security/auditLog/queries", axum::routing::post(create).get(list))
        .route("/{ver}/security/auditLog/queries/{id}", get(status))
        .route("/{ver}/security/auditLog/queries/{id}/records", get(records))
}

/// The refusal to answer instead, if the token or the version is wrong.
fn refusal(t: &Tenant, headers: &HeaderMap, ver: &str) -> Option<Response> {
    if let Err(r) = check_graph_auth(t, headers) {
        return Some(r);
    }
    (ver != "beta" && ver != "v1.0").then(|| graph_err(StatusCode::NOT_FOUND, "BadRequest", "Invalid version."))
}

fn json(status: StatusCode, v: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], v).into_response()
}

async fn create(State(t): State<S>, Path(ver): Path<String>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = refusal(&t, &headers, &ver) {
        return r;
    }
    let req: QueryRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return graph_err(StatusCode::BAD_REQUEST, "BadRequest", &format!("Invalid request body: {e}")),
    };
    match t.audit_create(&ver, req) {
        Ok(v) => json(StatusCode::CREATED, v.to_string()),
        Err(true) => {
            let mut r =
                graph_err(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Too many queued or running queries.");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            r
        }
        Err(false) => {
            graph_err(StatusCode::BAD_REQUEST, "BadRequest", "filterStartDateTime and filterEndDateTime are required.")
        }
    }
}

async fn list(State(t): State<S>, Path(ver): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&t, &headers, &ver) {
        return r;
    }
    json(StatusCode::OK, serde_json::json!({ "value": t.audit_list() }).to_string())
}

async fn status(State(t): State<S>, Path((ver, id)): Path<(String, String)>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&t, &headers, &ver) {
        return r;
    }
    match t.audit_status(&id) {
        Some(v) => json(StatusCode::OK, v.to_string()),
        None => graph_err(StatusCode::NOT_FOUND, "NotFound", "The audit log query was not found."),
    }
}

async fn records(
    State(t): State<S>,
    Path((ver, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refusal(&t, &headers, &ver) {
        return r;
    }
    let skip = q.get("$skiptoken").and_then(|s| s.parse().ok()).unwrap_or(0);
    // HTTP/2 carries the host in the URI's authority, HTTP/1.1 in `Host`.
    let host = uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    match t.audit_records(&format!("https://{host}"), &id, skip) {
        Ok(body) => json(StatusCode::OK, body),
        Err((404, m)) => graph_err(StatusCode::NOT_FOUND, "NotFound", m),
        Err((400, m)) => graph_err(StatusCode::BAD_REQUEST, "BadRequest", m),
        Err((_, m)) => graph_err(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", m),
    }
}
