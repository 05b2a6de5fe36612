//! The optional envelope around a record: `{"tenant":..,"source":..,"stream":..,"collected_at":..,
//! ["query":{..},] "record":<original JSON>}`. The original bytes are kept verbatim inside it;
//! `query` carries a backfilled record's audit log query fields (`auditLogRecordType`,
//! `operation`, `userPrincipalName`, ...).

use super::OutRecord;

pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Appends the enveloped record to `out` (no trailing newline).
pub fn write(out: &mut Vec<u8>, r: &OutRecord) {
    out.extend_from_slice(b"{\"tenant\":");
    out.extend_from_slice(json_str(&r.meta.tenant).as_bytes());
    out.extend_from_slice(b",\"source\":");
    out.extend_from_slice(json_str(&r.meta.source).as_bytes());
    out.extend_from_slice(b",\"stream\":");
    out.extend_from_slice(json_str(&r.meta.name).as_bytes());
    out.extend_from_slice(b",\"collected_at\":");
    out.extend_from_slice(json_str(&rfc3339_ms(r.meta.collected_at_ms)).as_bytes());
    if let Some(e) = r.envelope() {
        out.extend_from_slice(b",\"query\":");
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b",\"record\":");
    out.extend_from_slice(r.raw());
    out.push(b'}');
}
