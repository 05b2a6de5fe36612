//! A local HTTP collector for sink tests: records every request (headers, decompressed body)
//! and can throttle, refuse poison bodies, and play Splunk HEC's indexer acknowledgement.
#![allow(dead_code)]

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// Decompressed body.
    pub body: Vec<u8>,
    pub wire_bytes: usize,
}

#[derive(Default)]
pub struct Behaviour {
    /// Answer 429 (Retry-After: 1) to this many event posts first.
    pub throttle_first: usize,
    /// Answer 400 to any body containing this string.
    pub reject_containing: Option<String>,
    /// Success status (Azure Monitor: 204).
    pub success: Option<u16>,
    /// Splunk: return an ackId and serve `/services/collector/ack`, acking each id on its 2nd poll.
    pub splunk_ack: bool,
    /// Answer every POST with `302 Location: <this path>`, and a GET of that path with 200.
    pub redirect_posts_to: Option<String>,
    /// Answer 503 to everything, as a collector that is down behind its load balancer.
    pub down: bool,
}

#[derive(Default)]
pub struct Inner {
    pub behaviour: Behaviour,
    pub received: Vec<Received>,
    pub refused: usize,
    pub throttled: usize,
    next_ack: u64,
    ack_polls: std::collections::HashMap<u64, u32>,
    pub ack_requests: usize,
    /// POSTs answered with a redirect, and GETs of the redirect target.
    pub redirected: usize,
    pub redirect_gets: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub inner: Arc<Mutex<Inner>>,
    pub url: String,
}

async fn handle(State(r): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    let headers = req.headers().clone();
    let wire = axum::body::to_bytes(req.into_body(), 64 << 20).await.unwrap_or_else(|_| Bytes::new());
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&wire[..]).read_to_end(&mut out).expect("valid gzip");
        out
    } else {
        wire.to_vec()
    };
    let mut g = r.lock().unwrap();
    if g.behaviour.down {
        g.refused += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream").into_response();
    }
    if let Some(to) = g.behaviour.redirect_posts_to.clone() {
        if method == axum::http::Method::GET && path == to {
            g.redirect_gets += 1;
            return StatusCode::OK.into_response();
        }
        if method == axum::http::Method::POST {
            g.redirected += 1;
            return (StatusCode::FOUND, [("Location", to)], "moved").into_response();
        }
    }
    if path.ends_with("/services/collector/ack") {
        g.ack_requests += 1;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut acks = serde_json::Map::new();
        for id in v["acks"].as_array().cloned().unwrap_or_default() {
            let id = id.as_u64().unwrap_or(0);
            let n = g.ack_polls.entry(id).or_insert(0);
            *n += 1;
            acks.insert(id.to_string(), (*n >= 2).into());
        }
        return axum::Json(serde_json::json!({ "acks": acks })).into_response();
    }
    if g.throttled < g.behaviour.throttle_first {
        g.throttled += 1;
        return (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", "1")], "slow down").into_response();
    }
    if let Some(p) = &g.behaviour.reject_containing
        && body.windows(p.len()).any(|w| w == p.as_bytes())
    {
        g.refused += 1;
        return (StatusCode::BAD_REQUEST, "{\"text\":\"Invalid data format\",\"code\":6}").into_response();
    }
    g.received.push(Received { path, query, headers, body, wire_bytes: wire.len() });
    if g.behaviour.splunk_ack {
        g.next_ack += 1;
        let id = g.next_ack;
        return axum::Json(serde_json::json!({"text": "Success", "code": 0, "ackId": id})).into_response();
    }
    StatusCode::from_u16(g.behaviour.success.unwrap_or(200)).unwrap().into_response()
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner { behaviour, ..Inner::default() }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { inner, url }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn set_redirect(&self, to: Option<String>) {
        self.inner.lock().unwrap().behaviour.redirect_posts_to = to;
    }

    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().behaviour.down = down;
    }

    pub fn set_reject(&self, s: Option<String>) {
        self.inner.lock().unwrap().behaviour.reject_containing = s;
    }
}
