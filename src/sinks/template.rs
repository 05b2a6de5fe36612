//! `{tenant}`, `{source}` and `{stream}` placeholders in per-record strings such as Sumo Logic's
//! category or Splunk's source. Parsed once at startup so a typo is a config error, not a
//! surprise on the wire.

use super::RowMeta;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Tenant,
    Source,
    Stream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed '{{' in {0:?}")]
    Unclosed(String),
    #[error("unknown placeholder {{{0}}}; use {{tenant}}, {{source}} or {{stream}}")]
    Unknown(String),
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| TemplateError::Unclosed(s.to_string()))? + open;
            parts.push(match &rest[open + 1..close] {
                "tenant" => Part::Tenant,
                "source" => Part::Source,
                "stream" => Part::Stream,
                other => return Err(TemplateError::Unknown(other.to_string())),
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template(parts))
    }

    pub fn render(&self, m: &RowMeta) -> String {
        let mut out = String::new();
        for p in &self.0 {
            out.push_str(match p {
                Part::Lit(s) => s,
                Part::Tenant => &m.tenant,
                Part::Source => &m.source,
                Part::Stream => &m.name,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects_unknown_placeholders() {
        let m =
            RowMeta { tenant: "contoso".into(), source: "graph".into(), name: "signins".into(), collected_at_ms: 0 };
        assert_eq!(Template::parse("o365/{tenant}/{stream}").unwrap().render(&m), "o365/contoso/signins");
        assert_eq!(Template::parse("{source}").unwrap().render(&m), "graph");
        assert!(Template::parse("x/{tenat}").unwrap_err().to_string().contains("{tenat}"));
        assert!(Template::parse("x/{tenant").is_err());
    }
}
