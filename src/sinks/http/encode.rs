//! Turning a batch into request bodies for each preset, within the receiver's size limit.
//!
//! Records that need different headers (Sumo Logic's category is per tenant and stream) or a
//! different URL (Azure Monitor's DCR stream) go into different requests; order is kept within
//! each group. A record too large for any request is reported as poison before anything is sent.

use std::sync::Arc;

use super::config::{Format, HttpSinkSettings, Preset};
use crate::sinks::envelope::{json_str, rfc3339_ms};
use crate::sinks::{Batch, OutRecord, RowMeta, SinkError};

/// One HTTP request's worth of records.
#[derive(Debug, Default)]
pub struct Planned {
    /// Headers specific to this group (Sumo Logic's `X-Sumo-*`).
    pub headers: Vec<(&'static str, String)>,
    /// Azure Monitor's DCR stream for the URL.
    pub dcr_stream: Option<String>,
    pub body: Vec<u8>,
    pub records: usize,
}

/// Per-row parts computed once per spool row rather than once per record.
struct RowParts {
    meta: *const RowMeta,
    key: (Vec<(&'static str, String)>, Option<String>),
    /// Splunk: everything of the event object between `time` and `event`.
    splunk_middle: String,
}

pub struct Encoder<'a> {
    s: &'a HttpSinkSettings,
    last: Option<RowParts>,
}

/// The most specific mapping for a stream: `source/name`, then the name, then the longest
/// prefix pattern, then the source, then `*`. (Map order is alphabetical and says nothing.)
pub fn best_match<'m>(map: &'m [(String, String)], m: &RowMeta) -> Option<&'m str> {
    let full = format!("{}/{}", m.source, m.name);
    let rank = |p: &str| -> Option<(u8, usize)> {
        match p.strip_suffix('*') {
            _ if p == full => Some((0, 0)),
            _ if p == m.name => Some((1, 0)),
            _ if p == m.source => Some((3, 0)),
            Some("") => Some((4, 0)),
            Some(prefix) if full.starts_with(prefix) || m.name.starts_with(prefix) => {
                Some((2, usize::MAX - prefix.len()))
            }
            _ => None,
        }
    };
    map.iter().filter_map(|(p, v)| Some((rank(p)?, v.as_str()))).min_by_key(|(r, _)| *r).map(|(_, v)| v)
}

/// Splunk sourcetypes commonly used for these feeds (Splunk Add-on for Microsoft Office 365 and
/// for Microsoft Azure); `sourcetypes` in the config overrides them by pattern.
pub fn default_sourcetype(m: &RowMeta) -> &'static str {
    match (m.source.as_str(), m.name.as_str()) {
        ("management", "DLP.All") => "o365:management:activity:dlp",
        ("management", _) => "o365:management:activity",
        (_, n) if n.starts_with("signins") => "azure:aad:signin",
        (_, "directory_audits") => "azure:aad:audit",
        (_, "provisioning") => "azure:aad:provisioning",
        (_, "risk_detections") => "azure:aad:identity_protection:risk_detection",
        (_, "security_alerts") => "ms:defender:alert",
        (_, "message_trace") => "o365:reporting:messagetrace",
        (_, "azure_activity") => "azure:monitor:activity",
        _ => "auditkeeper:record",
    }
}

impl<'a> Encoder<'a> {
    pub fn new(s: &'a HttpSinkSettings) -> Encoder<'a> {
        Encoder { s, last: None }
    }

    fn parts(&mut self, m: &Arc<RowMeta>) -> &RowParts {
        let ptr = Arc::as_ptr(m);
        if self.last.as_ref().is_none_or(|p| p.meta != ptr) {
            let mut headers = Vec::new();
            let mut dcr = None;
            let mut middle = String::new();
            let s = self.s;
            match &s.preset {
                Preset::Sumo { category, name, host, fields } => {
                    if let Some(t) = category {
                        headers.push(("X-Sumo-Category", t.render(m)));
                    }
                    if let Some(t) = name {
                        headers.push(("X-Sumo-Name", t.render(m)));
                    }
                    if let Some(t) = host {
                        headers.push(("X-Sumo-Host", t.render(m)));
                    }
                    if !fields.is_empty() {
                        let v: Vec<String> = fields.iter().map(|(k, t)| format!("{k}={}", t.render(m))).collect();
                        headers.push(("X-Sumo-Fields", v.join(",")));
                    }
                }
                Preset::Splunk { index, host, source, sourcetypes, fields, .. } => {
                    let st = best_match(sourcetypes, m).unwrap_or_else(|| default_sourcetype(m));
                    if let Some(h) = host {
                        middle.push_str(&format!(",\"host\":{}", json_str(&h.render(m))));
                    }
                    middle.push_str(&format!(",\"source\":{}", json_str(&source.render(m))));
                    middle.push_str(&format!(",\"sourcetype\":{}", json_str(st)));
                    if let Some(i) = index {
                        middle.push_str(&format!(",\"index\":{}", json_str(i)));
                    }
                    let mut f = serde_json::Map::new();
                    f.insert("tenant".into(), m.tenant.clone().into());
                    f.insert("stream".into(), m.name.clone().into());
                    for (k, t) in fields {
                        f.insert(k.clone(), t.render(m).into());
                    }
                    middle.push_str(&format!(",\"fields\":{}", serde_json::Value::Object(f)));
                }
                Preset::AzureMonitor { dcr_streams, .. } => {
                    dcr = best_match(dcr_streams, m).map(str::to_string);
                }
                Preset::Generic { .. } => {}
            }
            self.last = Some(RowParts { meta: ptr, key: (headers, dcr), splunk_middle: middle });
        }
        self.last.as_ref().expect("set above")
    }

    /// Appends one record as this preset frames it (without array punctuation).
    fn record(&mut self, out: &mut Vec<u8>, r: &OutRecord) {
        let s = self.s;
        match &s.preset {
            Preset::Sumo { .. } | Preset::Generic { format: Format::Ndjson, envelope: false, .. } => {
                out.extend_from_slice(r.raw());
            }
            Preset::Generic { envelope: true, .. } => crate::sinks::envelope::write(out, r),
            Preset::Generic { envelope: false, .. } => out.extend_from_slice(r.raw()),
            Preset::Splunk { .. } => {
                // `time` is the record's own event time, epoch seconds with milliseconds.
                let t = r.event_time_ms;
                let time = if t > 0 { format!("{}.{:03}", t / 1000, t % 1000) } else { String::new() };
                out.extend_from_slice(b"{");
                if !time.is_empty() {
                    out.extend_from_slice(b"\"time\":");
                    out.extend_from_slice(time.as_bytes());
                }
                let middle = &self.parts(&r.meta).splunk_middle;
                let middle = if time.is_empty() { &middle[1..] } else { &middle[..] };
                out.extend_from_slice(middle.as_bytes());
                out.extend_from_slice(b",\"event\":");
                out.extend_from_slice(r.raw());
                out.extend_from_slice(b"}");
            }
            Preset::AzureMonitor { .. } => {
                // The record with `TimeGenerated` (its event time) added as the first column.
                let raw = r.raw();
                let open = raw.iter().position(|b| *b == b'{').unwrap_or(0);
                let time = rfc3339_ms(if r.event_time_ms > 0 { r.event_time_ms } else { r.meta.collected_at_ms });
                out.extend_from_slice(b"{\"TimeGenerated\":");
                out.extend_from_slice(json_str(&time).as_bytes());
                let rest = raw[open + 1..].iter().position(|b| !b.is_ascii_whitespace()).map(|p| raw[open + 1 + p]);
                if rest != Some(b'}') {
                    out.push(b',');
                }
                out.extend_from_slice(&raw[open + 1..]);
            }
        }
    }

    fn framing(&self) -> (&'static [u8], &'static [u8], &'static [u8]) {
        // (open, separator, close)
        match &self.s.preset {
            Preset::Sumo { .. } | Preset::Generic { format: Format::Ndjson, .. } => (b"", b"\n", b"\n"),
            Preset::Splunk { .. } => (b"", b"", b""),
            Preset::AzureMonitor { .. } | Preset::Generic { format: Format::JsonArray, .. } => (b"[", b",", b"]"),
        }
    }

    /// Splits `batch` into requests of at most `max_body_bytes` (uncompressed), grouped by the
    /// headers and URL each record needs. Requests come in the order their group first appears.
    pub fn plan(&mut self, batch: &Batch) -> Result<Vec<(Planned, Vec<usize>)>, SinkError> {
        let max = self.s.max_body_bytes as usize;
        let (open, sep, close) = self.framing();
        let mut done: Vec<(Planned, Vec<usize>)> = Vec::new();
        let mut open_groups: Vec<(Planned, Vec<usize>)> = Vec::new();
        let mut buf = Vec::new();
        for (i, r) in batch.records.iter().enumerate() {
            let key = self.parts(&r.meta).key.clone();
            if let Preset::AzureMonitor { .. } = self.s.preset
                && key.1.is_none()
            {
                return Err(SinkError::Poison {
                    index: i,
                    reason: format!("no dcr_streams entry matches stream {}/{}", r.meta.source, r.meta.name),
                });
            }
            buf.clear();
            self.record(&mut buf, r);
            if open.len() + buf.len() + close.len() > max {
                return Err(SinkError::Poison {
                    index: i,
                    reason: format!(
                        "record of {} bytes exceeds the receiver's limit of {max} bytes per request",
                        buf.len()
                    ),
                });
            }
            let g = match open_groups.iter().position(|(p, _)| p.headers == key.0 && p.dcr_stream == key.1) {
                Some(g) => g,
                None => {
                    open_groups.push((Planned { headers: key.0, dcr_stream: key.1, ..Default::default() }, vec![]));
                    open_groups.len() - 1
                }
            };
            let grp = &mut open_groups[g];
            if grp.0.records > 0 && grp.0.body.len() + sep.len() + buf.len() + close.len() > max {
                let mut full = std::mem::take(&mut grp.0);
                full.body.extend_from_slice(close);
                grp.0 = Planned {
                    headers: full.headers.clone(),
                    dcr_stream: full.dcr_stream.clone(),
                    ..Default::default()
                };
                done.push((full, std::mem::take(&mut grp.1)));
            }
            let grp = &mut open_groups[g];
            if grp.0.records == 0 {
                grp.0.body.extend_from_slice(open);
            } else {
                grp.0.body.extend_from_slice(sep);
            }
            grp.0.body.extend_from_slice(&buf);
            grp.0.records += 1;
            grp.1.push(i);
        }
        for (mut p, idx) in open_groups {
            if p.records > 0 {
                p.body.extend_from_slice(close);
                done.push((p, idx));
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_mapping_wins() {
        let map: Vec<(String, String)> =
            [("*", "all"), ("graph", "g"), ("signins_*", "s"), ("graph/signins_interactive", "si")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        let m =
            |src: &str, n: &str| RowMeta { tenant: "t".into(), source: src.into(), name: n.into(), collected_at_ms: 0 };
        assert_eq!(best_match(&map, &m("graph", "signins_interactive")), Some("si"));
        assert_eq!(best_match(&map, &m("graph", "signins_service_principal")), Some("s"));
        assert_eq!(best_match(&map, &m("graph", "directory_audits")), Some("g"));
        assert_eq!(best_match(&map, &m("management", "Audit.Exchange")), Some("all"));
        assert_eq!(best_match(&map[1..], &m("management", "Audit.Exchange")), None);
    }
}
