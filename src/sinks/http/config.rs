//! `type = "http"`: the operator's table, and its pure validation into settings. Secrets (the
//! Sumo Logic URL, HEC tokens, passwords) are named here by file or variable and read at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::schema::{BatchConfig, opt_size};
use crate::config::sinks::{BatchDefaults, CommonRaw, common};
use crate::config::validate::{Issues, SecretSource};
use crate::sinks::CommonSinkSettings;
use crate::sinks::template::Template;

/// Sumo Logic and Azure Monitor refuse more than 1 MB per request.
pub const ONE_MB: u64 = 1_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    pub name: Option<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub streams: Vec<String>,
    #[serde(default)]
    pub batch: BatchConfig,
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
    #[serde(default, deserialize_with = "opt_size")]
    pub max_body_bytes: Option<u64>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    JsonArray,
}

#[derive(Debug, Clone)]
pub enum GenericAuth {
    None,
    Bearer(SecretSource),
    Basic { username: String, password: SecretSource },
}

#[derive(Debug, Clone)]
pub struct SplunkAck {
    pub channel: String,
    pub timeout: Duration,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum Preset {
    Sumo {
        category: Option<Template>,
        name: Option<Template>,
        host: Option<Template>,
        fields: Vec<(String, Template)>,
    },
    Splunk {
        token: SecretSource,
        index: Option<String>,
        host: Option<Template>,
        source: Template,
        sourcetypes: Vec<(String, String)>,
        fields: Vec<(String, Template)>,
        ack: Option<SplunkAck>,
    },
    AzureMonitor {
        tenant: String,
        dcr_immutable_id: String,
        dcr_streams: Vec<(String, String)>,
        scope: String,
    },
    Generic {
        format: Format,
        auth: GenericAuth,
        envelope: bool,
    },
}

#[derive(Debug, Clone)]
pub struct HttpSinkSettings {
    pub common: CommonSinkSettings,
    pub preset: Preset,
    pub url: UrlSource,
    pub gzip: bool,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub client_identity: Option<(PathBuf, PathBuf)>,
    pub insecure: bool,
    pub max_body_bytes: u64,
}

pub(crate) fn secret(
    is: &mut Issues,
    p: &dyn Fn(&str) -> String,
    key: &str,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Option<SecretSource> {
    match (file, env) {
        (Some(f), None) => Some(SecretSource::File(f.clone())),
        (None, Some(e)) => Some(SecretSource::Env(e.clone())),
        (Some(_), Some(_)) => {
            is.add(p(&format!("{key}_file")), format!("set either {key}_file or {key}_env, not both"));
            None
        }
        (None, None) => None,
    }
}

fn template(is: &mut Issues, path: String, v: &Option<String>) -> Option<Template> {
    v.as_ref().and_then(|s| Template::parse(s).map_err(|e| is.add(path, e)).ok())
}

fn templates(is: &mut Issues, path: String, m: &BTreeMap<String, String>) -> Vec<(String, Template)> {
    m.iter().filter_map(|(k, v)| Some((k.clone(), template(is, format!("{path}.{k}"), &Some(v.clone()))?))).collect()
}

pub(crate) fn validate(
    is: &mut Issues,
    prefix: &str,
    c: &HttpSinkConfig,
    tenants: &[String],
) -> Option<HttpSinkSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    let preset_name = is.required(&c.preset, p("preset"))?;
    let hard = match preset_name.as_str() {
        "sumologic" | "azure_monitor" => ONE_MB,
        _ => 100 << 20,
    };
    let max_body_bytes = c.max_body_bytes.unwrap_or(hard.min(ONE_MB));
    if max_body_bytes == 0 || max_body_bytes > hard {
        is.add(p("max_body_bytes"), format!("must be between 1 and {hard} bytes for preset {preset_name}"));
    }
    // Batches a little under one request, so most batches are exactly one POST.
    let d = BatchDefaults {
        records: 2000,
        bytes: max_body_bytes * 9 / 10,
        hard_bytes: 1 << 30,
        linger: Duration::from_secs(1),
    };
    let raw = CommonRaw { name: &c.name, tenants: &c.tenants, streams: &c.streams, batch: &c.batch };
    let common = common(is, prefix, raw, d, tenants);

    let url = match (&c.url, secret(is, &p, "url", &c.url_file, &c.url_env)) {
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
    let client_identity = match (&c.client_cert_file, &c.client_key_file) {
        (Some(a), Some(b)) => Some((a.clone(), b.clone())),
        (None, None) => None,
        _ => {
            is.add(p("client_cert_file"), "client_cert_file and client_key_file go together");
            None
        }
    };
    for k in c.headers.keys() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            is.add(p(&format!("headers.{k}")), "not a valid HTTP header name");
        }
    }

    let preset = match preset_name.as_str() {
        "sumologic" => Preset::Sumo {
            category: template(is, p("category"), &c.category),
            name: template(is, p("source_name"), &c.source_name),
            host: template(is, p("host"), &c.host),
            fields: templates(is, p("fields"), &c.fields),
        },
        "splunk_hec" => {
            let token = secret(is, &p, "token", &c.token_file, &c.token_env);
            if token.is_none() {
                is.add(p("token_file"), "splunk_hec needs the HEC token in token_file or token_env");
            }
            let ack = c.ack.then(|| SplunkAck {
                channel: c.channel.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                timeout: c.ack_timeout.unwrap_or(Duration::from_secs(120)),
                poll_interval: c.ack_poll_interval.unwrap_or(Duration::from_secs(1)),
            });
            if let Some(ch) = &c.channel
                && uuid::Uuid::parse_str(ch).is_err()
            {
                is.add(p("channel"), "must be a GUID");
            }
            Preset::Splunk {
                token: token?,
                index: c.index.clone(),
                host: template(is, p("host"), &c.host),
                source: template(is, p("source"), &c.source.clone().or(Some("auditkeeper:{tenant}:{stream}".into())))?,
                sourcetypes: c.sourcetypes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                fields: templates(is, p("fields"), &c.fields),
                ack,
            }
        }
        "azure_monitor" => {
            let tenant = is.required(&c.tenant, p("tenant"));
            if let Some(t) = &tenant
                && !tenants.contains(t)
            {
                is.add(
                    p("tenant"),
                    format!("unknown tenant {t:?}: its app registration signs the Logs Ingestion calls"),
                );
            }
            let dcr = is.required(&c.dcr_immutable_id, p("dcr_immutable_id"));
            if c.dcr_streams.is_empty() {
                is.add(p("dcr_streams"), "map streams to DCR streams, e.g. { \"*\" = \"Custom-Auditkeeper_CL\" }");
            }
            Preset::AzureMonitor {
                tenant: tenant?,
                dcr_immutable_id: dcr?,
                dcr_streams: c.dcr_streams.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                scope: c.scope.clone().unwrap_or_else(|| "https://monitor.azure.com".into()),
            }
        }
        "generic" => {
            let format = match c.format.as_deref() {
                None | Some("ndjson") => Format::Ndjson,
                Some("json_array") => Format::JsonArray,
                Some(o) => {
                    is.add(p("format"), format!("{o:?}: use \"ndjson\" or \"json_array\""));
                    Format::Ndjson
                }
            };
            let auth = match c.auth.as_deref() {
                None | Some("none") => GenericAuth::None,
                Some("bearer") => {
                    GenericAuth::Bearer(secret(is, &p, "token", &c.token_file, &c.token_env).or_else(|| {
                        is.add(p("token_file"), "auth = \"bearer\" needs token_file or token_env");
                        None
                    })?)
                }
                Some("basic") => GenericAuth::Basic {
                    username: is.required(&c.username, p("username"))?,
                    password: secret(is, &p, "password", &c.password_file, &c.password_env).or_else(|| {
                        is.add(p("password_file"), "auth = \"basic\" needs password_file or password_env");
                        None
                    })?,
                },
                Some(o) => {
                    is.add(p("auth"), format!("{o:?}: use \"none\", \"bearer\" or \"basic\""));
                    GenericAuth::None
                }
            };
            Preset::Generic { format, auth, envelope: c.envelope }
        }
        other => {
            is.add(p("preset"), format!("{other:?}: use sumologic, splunk_hec, azure_monitor or generic"));
            return None;
        }
    };
    Some(HttpSinkSettings {
        common: common?,
        preset,
        url: url?,
        gzip,
        headers: c.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        timeout: c.timeout.unwrap_or(Duration::from_secs(30)),
        ca_file: c.ca_file.clone(),
        client_identity,
        insecure: c.tls_insecure_skip_verify,
        max_body_bytes,
    })
}
