//! One `[[tenants]]` entry: who signs in, against which cloud, and the sources it collects.

use super::cloud::Endpoints;
use super::schema::TenantConfig;
use crate::auth::{Credential, SignIn, UserAssigned};
use crate::common::names::{NAME_RULE, valid_name};
use crate::common::{Issues, SecretSource};
use crate::sources::audit_query::config::AuditQuerySettings;
use crate::sources::graph::config::GraphSettings;
use crate::sources::management::config::ManagementSettings;

#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub name: String,
    /// Where it was configured, for messages: `tenants[2]` or `tenants_dir[contoso.toml]`.
    pub origin: String,
    pub tenant_id: String,
    pub sign_in: SignIn,
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

pub fn validate(is: &mut Issues, prefix: &str, t: &TenantConfig) -> Option<TenantSettings> {
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
    let credential = credential(is, prefix, t);
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
    let (name, tenant_id) = (name?, tenant_id?);
    Some(TenantSettings {
        sign_in: SignIn {
            name: name.clone(),
            tenant_id: Some(tenant_id.clone()),
            authority: Some(endpoints.authority.clone()),
            credential: credential?,
        },
        name,
        origin: prefix.to_string(),
        tenant_id,
        publisher_identifier: publisher_identifier?,
        endpoints,
        management,
        graph,
        audit_query,
    })
}

/// The kinds of `credential`, and the keys each one takes besides `client_id`.
const KINDS: [(&str, &[&str]); 4] = [
    ("secret", &["client_secret_file", "client_secret_env"]),
    ("certificate", &["client_certificate_file"]),
    ("managed_identity", &["resource_id"]),
    ("workload_identity", &["token_file"]),
];

/// The kind a table names, or the one its keys imply (configs from before `credential`).
pub fn credential_kind(credential: Option<&str>, has: impl Fn(&str) -> bool) -> Option<String> {
    credential.map(str::to_string).or_else(|| {
        if has("client_certificate_file") {
            Some("certificate".into())
        } else if has("client_secret_file") || has("client_secret_env") {
            Some("secret".into())
        } else {
            None
        }
    })
}

/// Keys that belong to one credential kind (for `tenant_defaults`: a tenant of another kind
/// takes none of them).
pub fn credential_keys() -> impl Iterator<Item = &'static str> {
    ["credential", "client_id"].into_iter().chain(KINDS.iter().flat_map(|(_, keys)| keys.iter().copied()))
}

fn credential(is: &mut Issues, prefix: &str, t: &TenantConfig) -> Option<Credential> {
    let p = |k: &str| format!("{prefix}.{k}");
    let set = |k: &str| match k {
        "client_secret_file" => t.client_secret_file.is_some(),
        "client_secret_env" => t.client_secret_env.is_some(),
        "client_certificate_file" => t.client_certificate_file.is_some(),
        "resource_id" => t.resource_id.is_some(),
        "token_file" => t.token_file.is_some(),
        _ => false,
    };
    let names = KINDS.map(|(k, _)| k).join(", ");
    let Some(kind) = credential_kind(t.credential.as_deref(), set) else {
        is.add(
            p("credential"),
            format!(
                "is required: one of {names} (or client_secret_file, client_secret_env or client_certificate_file)"
            ),
        );
        return None;
    };
    let Some((_, own)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        is.add(p("credential"), format!("{kind:?}: use one of {names}"));
        return None;
    };
    // A key of another kind is a mistake, not something to ignore.
    for (other, keys) in KINDS.iter().filter(|(k, _)| *k != kind) {
        for key in keys.iter().filter(|k| set(k) && !own.contains(k)) {
            is.add(p(key), format!("is only used with credential = \"{other}\", not \"{kind}\""));
        }
    }
    let client_id = t.client_id.clone().filter(|c| !c.trim().is_empty());
    if t.client_id.as_ref().is_some_and(|c| c.trim().is_empty()) {
        is.add(p("client_id"), "must not be empty");
    }
    let app_client_id = |is: &mut Issues| {
        if client_id.is_none() && t.client_id.is_none() {
            is.add(p("client_id"), format!("is required with credential = \"{kind}\": the app registration's id"));
        }
        client_id.clone()
    };
    match kind.as_str() {
        "secret" => {
            let secret =
                SecretSource::from_keys(is, prefix, "client_secret", &t.client_secret_file, &t.client_secret_env);
            if secret.is_none() && t.client_secret_file.is_none() && t.client_secret_env.is_none() {
                is.add(
                    p("client_secret_file"),
                    "a client secret is required: client_secret_file (e.g. a systemd credential) or client_secret_env",
                );
            }
            Some(Credential::Secret { client_id: app_client_id(is)?, secret: secret? })
        }
        "certificate" => {
            let Some(pem) = t.client_certificate_file.clone() else {
                is.add(
                    p("client_certificate_file"),
                    "is required with credential = \"certificate\": a PEM with the certificate and its RSA private key",
                );
                return None;
            };
            Some(Credential::Certificate { client_id: app_client_id(is)?, pem: SecretSource::File(pem) })
        }
        "managed_identity" => match (client_id, &t.resource_id) {
            (Some(_), Some(_)) => {
                is.add(p("resource_id"), "set client_id or resource_id of the user-assigned identity, not both");
                None
            }
            (Some(c), None) => Some(Credential::ManagedIdentity(Some(UserAssigned::ClientId(c)))),
            (None, Some(r)) if r.starts_with("/subscriptions/") && r.contains("/userAssignedIdentities/") => {
                Some(Credential::ManagedIdentity(Some(UserAssigned::ResourceId(r.clone()))))
            }
            (None, Some(r)) => {
                is.add(
                    p("resource_id"),
                    format!("{r:?} is not a user-assigned identity's resource id (/subscriptions/…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME)"),
                );
                None
            }
            (None, None) => Some(Credential::ManagedIdentity(None)),
        },
        _ => Some(Credential::WorkloadIdentity { client_id, token_file: t.token_file.clone() }),
    }
}
