//! Per-sink routing: which tenants and streams a sink receives. One record can go to several
//! sinks; a record a sink does not want is skipped by that sink's forwarder only.

use super::RowMeta;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkFilter {
    /// Tenant names; empty means every tenant.
    pub tenants: Vec<String>,
    /// Stream patterns; empty means every stream. A pattern matches the source (`management`,
    /// `graph`), the stream name (`Audit.Exchange`, `signins_interactive`) or `source/name`, and
    /// may end in `*` to match a prefix (`signins_*`).
    pub streams: Vec<String>,
}

impl SinkFilter {
    pub fn accepts(&self, m: &RowMeta) -> bool {
        let tenant_ok = self.tenants.is_empty() || self.tenants.contains(&m.tenant);
        tenant_ok
            && (self.streams.is_empty()
                || self.streams.iter().any(|p| {
                    matches(p, &m.source) || matches(p, &m.name) || matches(p, &format!("{}/{}", m.source, m.name))
                }))
    }

    pub fn is_everything(&self) -> bool {
        self.tenants.is_empty() && self.streams.is_empty()
    }
}

fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(tenant: &str, source: &str, name: &str) -> RowMeta {
        RowMeta { tenant: tenant.into(), source: source.into(), name: name.into(), collected_at_ms: 0 }
    }

    #[test]
    fn matches_tenant_source_name_and_prefix() {
        let f = SinkFilter { tenants: vec!["a".into()], streams: vec!["signins_*".into(), "Audit.Exchange".into()] };
        assert!(f.accepts(&meta("a", "graph", "signins_interactive")));
        assert!(f.accepts(&meta("a", "management", "Audit.Exchange")));
        assert!(!f.accepts(&meta("b", "management", "Audit.Exchange")));
        assert!(!f.accepts(&meta("a", "management", "Audit.General")));
        let g = SinkFilter { tenants: vec![], streams: vec!["graph".into()] };
        assert!(g.accepts(&meta("x", "graph", "directory_audits")));
        assert!(!g.accepts(&meta("x", "management", "DLP.All")));
        let h = SinkFilter { tenants: vec![], streams: vec!["management/DLP.All".into()] };
        assert!(h.accepts(&meta("x", "management", "DLP.All")));
        assert!(SinkFilter::default().accepts(&meta("x", "y", "z")));
    }
}
