//! RFC 5424 messages: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
//!
//! TIMESTAMP is the record's event time, MSGID the stream, the structured data names tenant,
//! source, stream and record id, and MSG is the record as compact single-line JSON. PROCID is
//! `-` so a resent record is byte-identical to the first copy, which lets a SIEM drop it.

use super::config::{Oversize, SyslogSinkSettings};
use crate::sinks::OutRecord;
use crate::sinks::envelope::rfc3339_ms;

/// SD-ID under the documentation enterprise number of RFC 5612 (no IANA number of our own yet).
pub const SD_ID: &str = "auditkeeper@32473";

/// What happened to one record's message.
#[derive(Debug, PartialEq, Eq)]
pub enum Formatted {
    Ok,
    Truncated { original: usize },
    TooLarge { size: usize },
}

/// Escapes `"`, `\` and `]` in an SD-PARAM value (RFC 5424 section 6.3.3), and writes a
/// control character as `\xNN`: a record id holding a line break must not forge a second
/// message on an LF-framed connection.
fn sd_value(out: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        if b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            continue;
        }
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// MSGID: printable ASCII, at most 32 characters.
fn msgid(name: &str) -> String {
    let s: String = name.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
    if s.is_empty() { "-".into() } else { s }
}

/// Appends `raw` without whitespace outside strings; JSON escapes newlines inside strings, so
/// the result is one line whatever the source's pretty-printing. A raw line break inside a
/// string (invalid JSON) is escaped too, so no input can make two lines.
pub fn compact_json(out: &mut Vec<u8>, raw: &[u8]) {
    if !raw.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        out.extend_from_slice(raw.trim_ascii());
        return;
    }
    let (mut in_str, mut esc) = (false, false);
    for &b in raw {
        if in_str {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.push(b),
            }
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
            out.push(b);
        } else if !b.is_ascii_whitespace() {
            out.push(b);
        }
    }
}

pub struct Formatter {
    pri: String,
    hostname: String,
    app_name: String,
    max: usize,
    oversize: Oversize,
    msg: Vec<u8>,
}

impl Formatter {
    pub fn new(s: &SyslogSinkSettings) -> Formatter {
        let hostname = s.hostname.clone().unwrap_or_else(local_hostname);
        Formatter {
            pri: format!("<{}>", s.facility as u16 * 8 + s.severity as u16),
            hostname,
            app_name: s.app_name.clone(),
            max: s.max_message_bytes,
            oversize: s.oversize,
            msg: Vec::new(),
        }
    }

    /// Writes the message for `r` into `out` (cleared first).
    pub fn format(&mut self, out: &mut Vec<u8>, r: &OutRecord) -> Formatted {
        self.msg.clear();
        compact_json(&mut self.msg, r.raw());
        let header = |out: &mut Vec<u8>, truncated: Option<usize>| {
            out.clear();
            let t = if r.event_time_ms > 0 { r.event_time_ms } else { r.meta.collected_at_ms };
            out.extend_from_slice(self.pri.as_bytes());
            out.extend_from_slice(b"1 ");
            out.extend_from_slice(rfc3339_ms(t).as_bytes());
            out.push(b' ');
            out.extend_from_slice(self.hostname.as_bytes());
            out.push(b' ');
            out.extend_from_slice(self.app_name.as_bytes());
            out.extend_from_slice(b" - ");
            out.extend_from_slice(msgid(&r.meta.name).as_bytes());
            out.extend_from_slice(b" [");
            out.extend_from_slice(SD_ID.as_bytes());
            for (k, v) in [
                ("tenant", r.meta.tenant.as_str()),
                ("source", &r.meta.source),
                ("stream", &r.meta.name),
                ("id", r.id()),
            ] {
                out.extend_from_slice(format!(" {k}=\"").as_bytes());
                sd_value(out, v);
                out.push(b'"');
            }
            if let Some(n) = truncated {
                out.extend_from_slice(format!(" truncated=\"{n}\"").as_bytes());
            }
            out.extend_from_slice(b"] ");
        };
        header(out, None);
        if out.len() + self.msg.len() <= self.max {
            out.extend_from_slice(&self.msg);
            return Formatted::Ok;
        }
        let original = out.len() + self.msg.len();
        if self.oversize == Oversize::DeadLetter {
            return Formatted::TooLarge { size: original };
        }
        header(out, Some(self.msg.len()));
        let mut room = self.max.saturating_sub(out.len());
        // Cut on a UTF-8 boundary so the message stays valid UTF-8.
        while room > 0 && room < self.msg.len() && (self.msg[room] & 0xC0) == 0x80 {
            room -= 1;
        }
        out.extend_from_slice(&self.msg[..room.min(self.msg.len())]);
        Formatted::Truncated { original }
    }
}

pub fn local_hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h: String = h.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if h.is_empty() { "-".into() } else { h }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
