//! The RFC 5424 formatter: one frame per record whatever the record holds.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::sinks::syslog::config::{Framing, Transport};
use crate::sinks::{OutRecord, RowMeta};

fn settings(max: usize, oversize: Oversize) -> SyslogSinkSettings {
    SyslogSinkSettings {
        address: "127.0.0.1:514".into(),
        transport: Transport::Tcp,
        framing: Framing::Lf,
        app_name: "auditkeeper".into(),
        hostname: Some("collector-1".into()),
        facility: 16,
        severity: 6,
        max_message_bytes: max,
        oversize,
        tls: Default::default(),
        server_name: "localhost".into(),
        timeout: std::time::Duration::from_secs(5),
        resend_window: std::time::Duration::from_secs(10),
        resend_max_bytes: 1 << 20,
    }
}

fn record(id: &str, raw: &[u8]) -> OutRecord {
    let mut data = id.as_bytes().to_vec();
    data.extend_from_slice(raw);
    OutRecord {
        meta: Arc::new(RowMeta {
            tenant: "t".into(),
            source: "management".into(),
            name: "Audit.Exchange".into(),
            collected_at_ms: 1,
        }),
        id: 0..id.len(),
        raw: id.len()..data.len(),
        envelope: None,
        data: Arc::new(data),
        event_time_ms: 1_790_000_000_000,
    }
}

#[test]
fn a_line_break_in_the_record_id_cannot_forge_a_second_message() {
    let mut f = Formatter::new(&settings(65_536, Oversize::DeadLetter));
    let mut out = Vec::new();
    let forged = "a\n<13>1 2026-01-01T00:00:00Z evil app - - - forged";
    assert_eq!(f.format(&mut out, &record(forged, br#"{"Id":"a\n<13>1 forged"}"#)), Formatted::Ok);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
    assert!(text.contains(r#"id="a\x0a<13>1 2026-01-01T00:00:00Z evil app - - - forged""#), "{text}");
}

proptest! {
    /// For any record bytes and any id, one message, with no line break in it, within the limit.
    #[test]
    fn any_record_is_exactly_one_frame(id in "\\PC*|[\\x00-\\x7f]{0,40}", raw in proptest::collection::vec(any::<u8>(), 0..2048), max in 480usize..4096) {
        let mut f = Formatter::new(&settings(max, Oversize::Truncate));
        let mut out = Vec::new();
        let r = record(&id, &raw);
        match f.format(&mut out, &r) {
            Formatted::Ok | Formatted::Truncated { .. } => {}
            Formatted::TooLarge { .. } => prop_assert!(false, "truncate never refuses"),
        }
        prop_assert!(!out.contains(&b'\n') && !out.contains(&b'\r'));
        prop_assert!(out.len() <= max);
        prop_assert!(out.starts_with(b"<134>1 "));
    }
}
