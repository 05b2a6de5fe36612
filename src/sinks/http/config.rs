//! `type = "http"`: the operator's table, its pure validation into settings, and the checks of
//! its files at start. Secrets (the Sumo Logic URL, HEC tokens, passwords) are named here by
//! file or variable and read by the environment check and at build.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::common::tls::TlsClientSettings;
use crate::common::{Issues, SecretSource};
use crate::sinks::common::BatchDefaults;

mod preset;
pub use preset::{Format, GenericAuth, Preset, SplunkAck};

/// Sumo Logic and Azure Monitor refuse more than 1 MB per request.
pub const ONE_MB: u64 = 1_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// `sumologic`, `splunk_hec`, `azure_monitor` or `generic`.
    pub preset: Option<String>,
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
    pub url_env: Option<String>,
    /// `gzip` (default) or `none`.
    pub compression: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub max_body_bytes: Option<u64>,
    /// A forward proxy for this sink (`http://proxy:3128`), or `none` to go direct; without it,
    /// `HTTPS_PROXY` / `NO_PROXY` from the environment apply.
    pub proxy: Option<String>,
    /// `user:password` for that proxy.
    pub proxy_credentials_file: Option<PathBuf>,
    // generic and splunk_hec credentials
    pub auth: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    // generic
    pub format: Option<String>,
    #[serde(default)]
    pub envelope: bool,
    // sumologic (category, source_name, host) and splunk_hec (host, source, index)
    pub category: Option<String>,
    pub source_name: Option<String>,
    pub host: Option<String>,
    pub source: Option<String>,
    pub index: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub sourcetypes: BTreeMap<String, String>,
    #[serde(default)]
    pub ack: bool,
    pub channel: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub ack_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub ack_poll_interval: Option<Duration>,
    // azure_monitor
    pub tenant: Option<String>,
    pub dcr_immutable_id: Option<String>,
    #[serde(default)]
    pub dcr_streams: BTreeMap<String, String>,
    pub scope: Option<String>,
}

#[derive(Debug, Clone)]
pub enum UrlSource {
    Inline(url::Url),
    Secret(SecretSource),
}

/// No `Debug`: the settings name where secrets live, and a derived `Debug` of a future field
/// holding one would print it. `Debug` below shows only what is safe.
#[derive(Clone)]
pub struct HttpSinkSettings {
    pub preset: Preset,
    pub url: UrlSource,
    pub gzip: bool,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub tls: TlsClientSettings,
    pub insecure: bool,
    pub max_body_bytes: u64,
    pub proxy: SinkProxy,
}

/// How this sink reaches its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkProxy {
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`, if set.
    Environment,
    /// `proxy = "none"`: straight to the receiver, whatever the environment says.
    Direct,
    Via(crate::common::proxy::ProxySettings),
}

impl std::fmt::Debug for HttpSinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = match &self.url {
            UrlSource::Inline(u) => crate::sinks::redact::url(u),
            UrlSource::Secret(_) => "<from a secret>".into(),
        };
        f.debug_struct("HttpSinkSettings")
            .field("url", &url)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("insecure", &self.insecure)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

fn hard_body_limit(preset: Option<&str>) -> u64 {
    match preset {
        Some("sumologic" | "azure_monitor") => ONE_MB,
        _ => 100 << 20,
    }
}

/// Batches a little under one request, so most batches are exactly one POST.
pub fn batch_defaults(c: &HttpSinkConfig) -> BatchDefaults {
    let hard = hard_body_limit(c.preset.as_deref());
    let body = c.max_body_bytes.unwrap_or(hard.min(ONE_MB)).clamp(1, hard);
    BatchDefaults { records: 2000, bytes: (body * 9 / 10).max(1), hard_bytes: 1 << 30, linger: Duration::from_secs(1) }
}

/// True when `u` points at this machine: the only place a credential may go in clear text.
fn loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

pub fn validate(is: &mut Issues, prefix: &str, c: &HttpSinkConfig, tenants: &[String]) -> Option<HttpSinkSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    let secret = |is: &mut Issues, key: &str, file: &Option<PathBuf>, env: &Option<String>| {
        SecretSource::from_keys(is, prefix, key, file, env)
    };
    let preset_name = is.required(&c.preset, p("preset"))?;
    let hard = hard_body_limit(Some(&preset_name));
    let max_body_bytes = c.max_body_bytes.unwrap_or(hard.min(ONE_MB));
    if max_body_bytes == 0 || max_body_bytes > hard {
        is.add(p("max_body_bytes"), format!("must be between 1 and {hard} bytes for preset {preset_name}"));
    }

    let url = match (&c.url, secret(is, "url", &c.url_file, &c.url_env)) {
        (Some(u), None) => match url::Url::parse(u) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(UrlSource::Inline(u)),
            Ok(_) => {
                is.add(p("url"), "must be an http:// or https:// URL");
                None
            }
            Err(e) => {
                is.add(p("url"), format!("not a URL: {e}"));
                None
            }
        },
        (None, Some(s)) => Some(UrlSource::Secret(s)),
        (Some(_), Some(_)) => {
            is.add(p("url"), "set url, url_file or url_env, only one");
            None
        }
        (None, None) => {
            is.add(p("url"), "is required (or url_file / url_env when the URL carries a secret)");
            None
        }
    };
    let gzip = match c.compression.as_deref() {
        None | Some("gzip") => true,
        Some("none") => false,
        Some(o) => {
            is.add(p("compression"), format!("{o:?}: use \"gzip\" or \"none\""));
            true
        }
    };
    let tls = TlsClientSettings::from_keys(is, prefix, &c.ca_file, &c.client_cert_file, &c.client_key_file);
    if c.tls_insecure_skip_verify {
        is.warn(
            p("tls_insecure_skip_verify"),
            "TLS CERTIFICATE CHECKS ARE OFF for this sink: anyone on the path can read and alter the audit records and steal its credential",
        );
    }
    for k in c.headers.keys() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            is.add(p(&format!("headers.{k}")), "not a valid HTTP header name");
        }
    }

    let preset = preset::validate(is, prefix, &preset_name, c, tenants)?;
    // A credential in clear text over a network would be read by anyone on the path.
    let carries_credential =
        !matches!(preset, Preset::Generic { auth: GenericAuth::None, .. }) || matches!(url, Some(UrlSource::Secret(_)));
    if let Some(UrlSource::Inline(u)) = &url
        && u.scheme() == "http"
        && carries_credential
        && !loopback(u)
    {
        is.add(
            p("url"),
            "plain http:// would send this sink's credential in clear text; use https:// (http is allowed only to a loopback address)",
        );
    }
    let timeout = c.timeout.unwrap_or(Duration::from_secs(30));
    is.within(p("timeout"), timeout, Duration::from_secs(1), Duration::from_secs(3600));
    if let Preset::Splunk { ack: Some(a), .. } = &preset {
        is.within(p("ack_timeout"), a.timeout, Duration::from_secs(1), Duration::from_secs(3600));
        is.within(p("ack_poll_interval"), a.poll_interval, Duration::from_millis(100), Duration::from_secs(60));
    }
    let proxy = match c.proxy.as_deref() {
        Some("none") if c.proxy_credentials_file.is_some() => {
            is.add(p("proxy_credentials_file"), "only applies with a proxy URL, not proxy = \"none\"");
            SinkProxy::Direct
        }
        Some("none") => SinkProxy::Direct,
        _ => crate::common::proxy::validate(is, prefix, &c.proxy, &c.proxy_credentials_file, &None)
            .map_or(SinkProxy::Environment, SinkProxy::Via),
    };
    Some(HttpSinkSettings {
        proxy,
        preset,
        url: url?,
        gzip,
        headers: c.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        timeout,
        tls,
        insecure: c.tls_insecure_skip_verify,
        max_body_bytes,
    })
}

impl HttpSinkSettings {
    /// Every secret this sink needs, with the key it is configured under.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretSource)> {
        let mut out: Vec<(&'static str, &SecretSource)> = Vec::new();
        if let UrlSource::Secret(src) = &self.url {
            out.push(("url", src));
        }
        match &self.preset {
            Preset::Splunk { token, .. } | Preset::Generic { auth: GenericAuth::Bearer(token), .. } => {
                out.push(("token", token))
            }
            Preset::Generic { auth: GenericAuth::Basic { password, .. }, .. } => out.push(("password", password)),
            _ => {}
        }
        out
    }

    /// The environment check: secrets readable, a URL read from a secret is usable, TLS files parse.
    pub fn check(&self, is: &mut Issues, prefix: &str) {
        if let SinkProxy::Via(p) = &self.proxy {
            p.check(is, prefix);
        }
        for (key, src) in self.secrets() {
            let path = match src {
                SecretSource::File(_) => format!("{prefix}.{key}_file"),
                SecretSource::Env(_) => format!("{prefix}.{key}_env"),
            };
            src.check(is, &path);
        }
        if let UrlSource::Secret(src) = &self.url
            && let Ok(text) = src.read()
        {
            match url::Url::parse(text.trim()) {
                Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && loopback(&u)) => {}
                Ok(_) => is.add(
                    format!("{prefix}.url"),
                    "the URL in the secret must be https:// (http only to a loopback address)",
                ),
                // The value is a secret: say what is wrong without echoing it.
                Err(e) => is.add(format!("{prefix}.url"), format!("the secret does not hold a URL ({e})")),
            }
        }
        self.tls.check(is, prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_url_that_is_the_credential() {
        let raw: HttpSinkConfig = serde_json::from_value(serde_json::json!({
            "preset": "sumologic",
            "url": "https://collectors.sumologic.com/receiver/v1/http/ZaVnC4dhaV3uTKlvYqgZ8secretCollectorCode"
        }))
        .unwrap();
        let mut is = Issues::new();
        let s = validate(&mut is, "sinks[0]", &raw, &[]).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("ZaVnC4dhaV3uTKlvYqgZ8secretCollectorCode"), "{shown}");
        assert!(shown.contains("collectors.sumologic.com"), "{shown}");
    }
}
