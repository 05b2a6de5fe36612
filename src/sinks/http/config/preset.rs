//! An HTTP sink's preset: what each receiver (Sumo Logic, Splunk HEC, Azure Monitor's Logs
//! Ingestion API, a generic endpoint) needs beyond a URL, and its validation from the
//! operator's table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::HttpSinkConfig;
use crate::common::{Issues, SecretSource};
use crate::sinks::template::Template;

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

fn template(is: &mut Issues, path: String, v: &Option<String>) -> Option<Template> {
    v.as_ref().and_then(|s| Template::parse(s).map_err(|e| is.add(path, e.to_string())).ok())
}

fn templates(is: &mut Issues, path: String, m: &BTreeMap<String, String>) -> Vec<(String, Template)> {
    m.iter().filter_map(|(k, v)| Some((k.clone(), template(is, format!("{path}.{k}"), &Some(v.clone()))?))).collect()
}

/// The preset named `name`, or `None` (with the reason in `is`) when its keys do not make one.
pub(super) fn validate(
    is: &mut Issues,
    prefix: &str,
    name: &str,
    c: &HttpSinkConfig,
    tenants: &[String],
) -> Option<Preset> {
    let p = |k: &str| format!("{prefix}.{k}");
    let secret = |is: &mut Issues, key: &str, file: &Option<PathBuf>, env: &Option<String>| {
        SecretSource::from_keys(is, prefix, key, file, env)
    };
    Some(match name {
        "sumologic" => Preset::Sumo {
            category: template(is, p("category"), &c.category),
            name: template(is, p("source_name"), &c.source_name),
            host: template(is, p("host"), &c.host),
            fields: templates(is, p("fields"), &c.fields),
        },
        "splunk_hec" => {
            let token = secret(is, "token", &c.token_file, &c.token_env);
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
                    GenericAuth::Bearer(secret(is, "token", &c.token_file, &c.token_env).or_else(|| {
                        is.add(p("token_file"), "auth = \"bearer\" needs token_file or token_env");
                        None
                    })?)
                }
                Some("basic") => GenericAuth::Basic {
                    username: is.required(&c.username, p("username"))?,
                    password: secret(is, "password", &c.password_file, &c.password_env).or_else(|| {
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
    })
}
