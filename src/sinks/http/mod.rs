//! The HTTP sink: Sumo Logic, Splunk HEC, Azure Monitor Logs Ingestion, or a generic collector.
//!
//! `config` validates, `encode` frames records per preset and splits them into requests within
//! the receiver's limit, `classify` maps answers to retry/refuse, `splunk_ack` waits for indexer
//! acknowledgement. A batch is confirmed only when every one of its requests was accepted (and,
//! with HEC ack, acknowledged).

pub mod classify;
pub mod config;
pub mod encode;
pub mod splunk_ack;

use std::io::Write;
use std::sync::Arc;

use config::{GenericAuth, HttpSinkSettings, Preset, UrlSource};
use encode::Encoder;

use crate::auth::TenantAuth;
use crate::common::SecretSource;
use crate::sinks::{Accepted, Batch, BuildContext, BuildError, Sink, SinkError, redact};

pub struct HttpSink {
    s: HttpSinkSettings,
    client: reqwest::Client,
    url: url::Url,
    shown: String,
    secrets: Vec<String>,
    auth_header: Option<String>,
    monitor: Option<Arc<TenantAuth>>,
}

fn load(what: &'static str, s: &SecretSource) -> Result<String, BuildError> {
    s.read().map_err(|source| BuildError::Secret { what, source })
}

impl HttpSink {
    pub fn new(_name: &str, s: HttpSinkSettings, ctx: &BuildContext) -> Result<HttpSink, BuildError> {
        let mut secrets = Vec::new();
        let url = match &s.url {
            UrlSource::Inline(u) => u.clone(),
            UrlSource::Secret(src) => {
                let text = load("url", src)?;
                secrets.push(text.trim().to_string());
                // Never echo the value: it is the credential.
                url::Url::parse(text.trim())
                    .map_err(|e| BuildError::Invalid(format!("the url secret does not hold a URL: {e}")))?
            }
        };
        // Sumo Logic's whole credential is the URL path.
        if matches!(s.preset, Preset::Sumo { .. }) {
            secrets.push(url.path().to_string());
        }
        let shown = redact::url(&url);
        let mut monitor = None;
        let auth_header = match &s.preset {
            Preset::Splunk { token, .. } => {
                let t = load("token", token)?.trim().to_string();
                secrets.push(t.clone());
                Some(format!("Splunk {t}"))
            }
            Preset::Generic { auth: GenericAuth::Bearer(src), .. } => {
                let t = load("token", src)?.trim().to_string();
                secrets.push(t.clone());
                Some(format!("Bearer {t}"))
            }
            Preset::Generic { auth: GenericAuth::Basic { username, password }, .. } => {
                use base64::Engine;
                let p = load("password", password)?.trim().to_string();
                secrets.push(p.clone());
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{p}"))))
            }
            Preset::AzureMonitor { tenant, .. } => {
                monitor = Some(ctx.auth.get(tenant).cloned().ok_or_else(|| BuildError::UnknownTenant(tenant.clone()))?);
                None
            }
            _ => None,
        };
        let client = build_client(&s)?;
        Ok(HttpSink { s, client, url, shown, secrets, auth_header, monitor })
    }

    fn scrub(&self, m: &str) -> String {
        redact::scrub(m, &self.secrets)
    }

    fn request_url(&self, dcr_stream: Option<&str>, ack: bool) -> url::Url {
        let mut u = self.url.clone();
        let base = u.path().trim_end_matches('/').to_string();
        match &self.s.preset {
            Preset::Splunk { .. } => {
                u.set_path(&format!("{base}/services/collector/{}", if ack { "ack" } else { "event" }));
            }
            Preset::AzureMonitor { dcr_immutable_id, .. } => {
                u.set_path(&format!(
                    "{base}/dataCollectionRules/{dcr_immutable_id}/streams/{}",
                    dcr_stream.unwrap_or("")
                ));
                u.set_query(Some("api-version=2023-01-01"));
            }
            _ => {}
        }
        u
    }

    async fn post(&self, p: &encode::Planned) -> Result<Vec<u8>, SinkError> {
        let body = if self.s.gzip {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(p.body.len() / 4), flate2::Compression::fast());
            enc.write_all(&p.body).and_then(|_| enc.finish()).map_err(|e| SinkError::Retryable(format!("gzip: {e}")))?
        } else {
            p.body.clone()
        };
        let content_type = match &self.s.preset {
            Preset::Sumo { .. } | Preset::Generic { format: config::Format::Ndjson, .. } => "application/x-ndjson",
            _ => "application/json",
        };
        let mut req =
            self.client.post(self.request_url(p.dcr_stream.as_deref(), false)).header("Content-Type", content_type);
        if self.s.gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        for (k, v) in &self.s.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in &p.headers {
            req = req.header(*k, v.as_str());
        }
        if let Some(a) = &self.auth_header {
            req = req.header("Authorization", a.as_str());
        }
        if let Preset::Splunk { ack: Some(a), .. } = &self.s.preset {
            req = req.header("X-Splunk-Request-Channel", a.channel.as_str());
        }
        if let (Some(auth), Preset::AzureMonitor { scope, .. }) = (&self.monitor, &self.s.preset) {
            let token = auth.token(scope).await.map_err(|e| SinkError::Retryable(e.to_string()))?;
            req = req.bearer_auth(token);
        }
        let resp = req.body(body).send().await.map_err(|e| {
            SinkError::Retryable(self.scrub(&format!("{}: {}", self.shown, crate::http::error_chain(&e.without_url()))))
        })?;
        let code = resp.status();
        let after = classify::retry_after(resp.headers());
        let text = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        if code.as_u16() == 401
            && let Some(a) = &self.monitor
        {
            a.invalidate();
        }
        let excerpt = self.scrub(String::from_utf8_lossy(&text[..text.len().min(400)]).trim());
        classify::status(code, after, &excerpt).map_err(|e| match e {
            SinkError::Retryable(m) => SinkError::Retryable(format!("{}: {m}", self.shown)),
            other => other,
        })?;
        Ok(text)
    }
}

fn build_client(s: &HttpSinkSettings) -> Result<reqwest::Client, BuildError> {
    let b = reqwest::Client::builder()
        .user_agent(concat!("auditkeeper/", env!("CARGO_PKG_VERSION")))
        .timeout(s.timeout)
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(50))
        // A redirected POST is replayed by clients as a GET without its body; a 2xx to that
        // would confirm records that were never sent. A 3xx is an error here, never a delivery.
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(s.insecure);
    let b = match &s.proxy {
        config::SinkProxy::Environment => b,
        config::SinkProxy::Direct => b.no_proxy(),
        config::SinkProxy::Via(p) => p.apply(b).map_err(|e| BuildError::Client(format!("proxy: {e}")))?,
    };
    let b = s.tls.apply(b)?;
    b.build().map_err(|e| BuildError::Client(format!("cannot build HTTP client: {}", crate::http::error_chain(&e))))
}

#[async_trait::async_trait]
impl Sink for HttpSink {
    async fn send(&mut self, batch: &Batch, accepted: &mut Accepted) -> Result<(), SinkError> {
        let plan = Encoder::new(&self.s).plan(batch)?;
        let hec_ack = matches!(&self.s.preset, Preset::Splunk { ack: Some(_), .. });
        let mut acks = Vec::new();
        for (req, members) in &plan {
            let body = self.post(req).await?;
            if hec_ack {
                acks.push(splunk_ack::ack_id(&body).ok_or_else(|| {
                    SinkError::Retryable(
                        "HEC answered without an ackId: enable indexer acknowledgement on the token or set ack = false"
                            .into(),
                    )
                })?);
            } else {
                // Accepted by the receiver: a retry of this batch leaves these records out.
                accepted.mark_all(members.iter().copied());
            }
        }
        if let (Preset::Splunk { ack: Some(a), .. }, Some(auth)) = (&self.s.preset, &self.auth_header)
            && !acks.is_empty()
        {
            let poll = splunk_ack::AckPoll {
                client: &self.client,
                url: self.request_url(None, true),
                token: auth.trim_start_matches("Splunk "),
                channel: &a.channel,
                timeout: a.timeout,
                poll_interval: a.poll_interval,
            };
            poll.wait(acks).await?;
        }
        Ok(())
    }
}
