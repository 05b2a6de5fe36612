//! One `[[tenants]]` entry: who signs in, against which cloud, and the sources it collects.

use super::cloud::Endpoints;
use super::schema::TenantConfig;
use crate::auth::{AppCredential, CredentialKind};
use crate::common::names::{NAME_RULE, valid_name};
use crate::common::{Issues, SecretSource};
use crate::sources::audit_query::config::AuditQuerySettings;
use crate::sources::graph::config::GraphSettings;
use crate::sources::management::config::ManagementSettings;

#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub credential: AppCredential,
    pub publisher_identifier: String,
    pub endpoints: Endpoints,
    pub management: Option<ManagementSettings>,
    pub graph: Option<GraphSettings>,
    pub audit_query: Option<AuditQuerySettings>,
}

impl TenantSettings {
    /// How many streams this tenant runs.
    pub fn stream_count(&self) -> usize {
        self.management.as_ref().map_or(0, |m| m.content_types.len())
            + self.graph.as_ref().map_or(0, |g| g.streams.len())
            + usize::from(self.audit_query.is_some())
    }
}

pub fn validate(is: &mut Issues, i: usize, t: &TenantConfig) -> Option<TenantSettings> {
    let prefix = format!("tenants[{i}]");
    let p = |k: &str| format!("{prefix}.{k}");
    let name = is.required(&t.name, p("name"));
    if let Some(n) = &name
        && !valid_name(n)
    {
        is.add(p("name"), format!("{NAME_RULE}; it names files and streams"));
    }
    let tenant_id = is.required(&t.tenant_id, p("tenant_id"));
    if let Some(id) = &tenant_id
        && uuid::Uuid::parse_str(id).is_err()
    {
        is.add(p("tenant_id"), format!("{id:?} is not a GUID (the Management Activity API needs the directory id)"));
    }
    let client_id = is.required(&t.client_id, p("client_id"));
    if let Some(c) = &client_id
        && c.trim().is_empty()
    {
        is.add(p("client_id"), "must not be empty");
    }
    let secret = match (&t.client_secret_file, &t.client_secret_env, &t.client_certificate_file) {
        (Some(f), None, None) => Some(SecretSource::File(f.clone())),
        (None, Some(e), None) if !e.is_empty() => Some(SecretSource::Env(e.clone())),
        (None, None, Some(c)) => Some(SecretSource::File(c.clone())),
        (None, Some(_), None) => {
            is.add(p("client_secret_env"), "must name an environment variable");
            None
        }
        (None, None, None) => {
            is.add(
                p("client_secret_file"),
                "a credential is required: client_secret_file (e.g. a systemd credential), client_secret_env or client_certificate_file",
            );
            None
        }
        _ => {
            is.add(
                p("client_secret_file"),
                "set one of client_secret_file, client_secret_env or client_certificate_file",
            );
            None
        }
    };
    let kind = if t.client_certificate_file.is_some() { CredentialKind::Certificate } else { CredentialKind::Secret };
    let publisher_identifier = t.publisher_identifier.clone().or_else(|| tenant_id.clone());
    if let Some(pi) = &t.publisher_identifier
        && uuid::Uuid::parse_str(pi).is_err()
    {
        is.add(p("publisher_identifier"), format!("{pi:?} is not a GUID"));
    }

    let mut endpoints = t.cloud.endpoints();
    let o = &t.endpoints;
    for (key, value, slot) in [
        ("authority", &o.authority, &mut endpoints.authority),
        ("management", &o.management, &mut endpoints.management),
        ("management_resource", &o.management_resource, &mut endpoints.management_resource),
        ("graph", &o.graph, &mut endpoints.graph),
        ("arm", &o.arm, &mut endpoints.arm),
    ] {
        if let Some(v) = value {
            match reqwest::Url::parse(v) {
                Ok(u) if u.scheme() == "https" && u.host_str().is_some() => *slot = v.trim_end_matches('/').to_string(),
                Ok(_) => is.add(p(&format!("endpoints.{key}")), format!("{v:?} must be an https:// URL")),
                Err(e) => is.add(p(&format!("endpoints.{key}")), format!("{v:?} is not a URL: {e}")),
            }
        }
    }
    // The token audience follows an overridden management host unless set on its own.
    if o.management.is_some() && o.management_resource.is_none() {
        endpoints.management_resource = endpoints.management.clone();
    }

    let management =
        crate::sources::management::config::validate(is, &p("management_activity"), &t.management_activity);
    let graph = crate::sources::graph::config::validate(is, &p("graph"), &t.graph, t.cloud.is_global_service());
    let audit_query = crate::sources::audit_query::config::validate(
        is,
        &p("audit_query"),
        &t.audit_query.clone().unwrap_or_default(),
        t.audit_query.is_some(),
        t.cloud.is_global_service(),
        t.cloud.name(),
    );
    let (name, tenant_id, client_id) = (name?, tenant_id?, client_id?);
    Some(TenantSettings {
        credential: AppCredential {
            tenant: name.clone(),
            tenant_id: tenant_id.clone(),
            client_id: client_id.clone(),
            secret: secret?,
            kind,
            authority: endpoints.authority.clone(),
        },
        name,
        tenant_id,
        client_id,
        publisher_identifier: publisher_identifier?,
        endpoints,
        management,
        graph,
        audit_query,
    })
}
