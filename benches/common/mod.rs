//! Spool pages for the benchmarks: 1.6 KB Exchange records, as the simulator renders them.
#![allow(dead_code)]

use auditkeeper::simulator::records;
use auditkeeper::sources::record::key_for_id;
use auditkeeper::store::{Checkpoint, IngestPage, PageRecord};

/// Page `p` of `per_page` records for stream `{tenant}/management/Audit.Exchange`.
pub fn exchange_page(tenant: &str, p: u64, per_page: u64, event_time_ms: i64) -> IngestPage {
    let now = chrono::Utc::now();
    let mut body = Vec::new();
    let mut recs = Vec::new();
    for i in 0..per_page {
        let raw = records::render(7, "tid", "Audit.Exchange", 1, p, i as u32, now, false, true);
        let id = records::record_id(7, 1, p, i as u32);
        let start = body.len();
        body.extend_from_slice(raw.as_bytes());
        recs.push(PageRecord {
            key: key_for_id(&id),
            id_key: None,
            id,
            event_time_ms,
            key_time_ms: event_time_ms,
            raw: start..body.len(),
            envelope: None,
        });
    }
    IngestPage {
        stream: format!("{tenant}/management/Audit.Exchange"),
        tenant: tenant.into(),
        source: "management".into(),
        name: "Audit.Exchange".into(),
        body,
        records: recs,
        checkpoint: Checkpoint::Cursor(format!("{p}")),
        throttled: Vec::new(),
    }
}
