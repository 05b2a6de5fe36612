//! Where tenant tables come from: `[[tenants]]` and the files of `tenants_dir`, each laid over
//! `[tenant_defaults]`. A provider with hundreds of tenants keeps what they share (streams,
//! pacing, cloud, a multi-tenant app's client id and certificate) once, and one small file per
//! customer.
//!
//! Tables merge key by key, nested tables too; a value the tenant sets wins, arrays included.
//! The credential keys are one group: a tenant whose credential kind differs from the
//! defaults' takes none of the defaults' credential keys (a user-assigned identity must never
//! inherit the shared app's `client_id`).

use serde_json::{Map, Value};

use super::schema::{RawConfig, TenantConfig};
use super::tenant::{credential_keys, credential_kind};
use crate::common::Issues;

/// Every tenant's table with the defaults applied, and the prefix its problems are named by.
pub fn tenant_tables(is: &mut Issues, raw: &RawConfig) -> Vec<(String, TenantConfig)> {
    let defaults = match &raw.tenant_defaults {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            is.add("tenant_defaults", "must be a table");
            return Vec::new();
        }
    };
    for key in ["name", "tenant_id", "publisher_identifier"] {
        if defaults.contains_key(key) {
            is.add(format!("tenant_defaults.{key}"), "is each tenant's own; set it in the tenant");
        }
    }
    if let Err(e) = serde_json::from_value::<TenantConfig>(Value::Object(defaults.clone())) {
        // Named once here, not once per tenant.
        is.add("tenant_defaults", e.to_string());
        return Vec::new();
    }
    let listed = raw.tenants.iter().enumerate().map(|(i, t)| (format!("tenants[{i}]"), t.clone(), None));
    let files = raw.dir_tenants.iter().map(|(file, t)| {
        let stem = file.strip_suffix(".toml").unwrap_or(file).to_string();
        (format!("tenants_dir[{file}]"), t.clone(), Some(stem))
    });
    let mut out = Vec::new();
    for (prefix, table, file_name) in listed.chain(files) {
        let Value::Object(mut table) = table else {
            is.add(prefix, "must be a table");
            continue;
        };
        if let Some(n) = file_name {
            table.entry("name").or_insert(Value::String(n));
        }
        match serde_json::from_value::<TenantConfig>(Value::Object(apply(&defaults, table))) {
            Ok(t) => out.push((prefix, t)),
            Err(e) => is.add(prefix, e.to_string()),
        }
    }
    out
}

/// `tenant` laid over `defaults`.
fn apply(defaults: &Map<String, Value>, tenant: Map<String, Value>) -> Map<String, Value> {
    let kind =
        |m: &Map<String, Value>| credential_kind(m.get("credential").and_then(Value::as_str), |k| m.contains_key(k));
    let mut base = defaults.clone();
    if let (Some(mine), Some(theirs)) = (kind(&tenant), kind(defaults))
        && mine != theirs
    {
        for k in credential_keys() {
            base.remove(k);
        }
    }
    merge(base, tenant)
}

fn merge(mut base: Map<String, Value>, over: Map<String, Value>) -> Map<String, Value> {
    for (k, v) in over {
        let merged = match (base.remove(&k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => Value::Object(merge(b, o)),
            (_, v) => v,
        };
        base.insert(k, merged);
    }
    base
}

/// Reads every `*.toml` of `dir`, in name order: (file name, table).
pub fn read_dir(dir: &std::path::Path) -> Result<Vec<(String, Value)>, super::ConfigError> {
    let err =
        |p: &std::path::Path, message: String| super::ConfigError::Load { path: p.display().to_string(), message };
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir, format!("tenants_dir: {e}")))?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let text = std::fs::read_to_string(&p).map_err(|e| err(&p, e.to_string()))?;
            let table: Value = super::from_toml_str(&text).map_err(|e| err(&p, e.to_string()))?;
            Ok((name, table))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_tenant_overrides_defaults_key_by_key_and_nested_tables_merge() {
        let d = obj(
            json!({"cloud": "gcc", "management_activity": {"poll_interval": "5m", "content_types": ["Audit.General"]}}),
        );
        let t = obj(json!({"name": "a", "management_activity": {"poll_interval": "1m"}}));
        assert_eq!(
            Value::Object(apply(&d, t)),
            json!({"name": "a", "cloud": "gcc", "management_activity": {"poll_interval": "1m", "content_types": ["Audit.General"]}})
        );
    }

    #[test]
    fn a_tenant_of_another_credential_kind_takes_none_of_the_defaults_credential_keys() {
        let d = obj(json!({"client_id": "app", "client_certificate_file": "/c.pem", "cloud": "gcc"}));
        let mi = obj(json!({"name": "a", "credential": "managed_identity"}));
        assert_eq!(
            Value::Object(apply(&d, mi)),
            json!({"name": "a", "credential": "managed_identity", "cloud": "gcc"})
        );
        let same = obj(json!({"name": "b", "credential": "certificate"}));
        assert_eq!(apply(&d, same)["client_id"], json!("app"), "the same kind takes the shared app");
    }
}
