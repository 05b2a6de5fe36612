//! Splitting a JSON array response into raw records, and reading the few fields the collector
//! needs (id, event time) without re-serialising anything.

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::json_scan;
use super::record_head::{self, Fields};
use crate::store::PageRecord;

#[derive(Debug, thiserror::Error)]
#[error("response is not a JSON array of records: {0}")]
pub struct ParseError(String);

/// Parsed records of a Management Activity content blob; `raw` ranges point into `body`.
pub struct ParsedBlob {
    pub records: Vec<PageRecord>,
    pub without_id: u64,
    /// Records (by index) saying Exchange throttled MailItemsAccessed auditing of a mailbox.
    pub throttled: Vec<(usize, String)>,
}

/// Splits a content blob (a JSON array) into its records, keyed by the record `Id`.
///
/// The dedupe key is derived from `Id` and never from the raw text: Microsoft re-delivers the
/// same record with a different key order.
pub fn parse_management_blob(body: &[u8]) -> Result<ParsedBlob, ParseError> {
    match parse_in_one_pass(body) {
        Some(parsed) => Ok(parsed),
        None => parse_in_two_passes(body),
    }
}

/// Splits the array first, then reads each record's head: slower, but it takes whatever JSON
/// the array holds and names what is wrong with a blob that is not one.
fn parse_in_two_passes(body: &[u8]) -> Result<ParsedBlob, ParseError> {
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| ParseError(e.to_string()))?;
    let base = body.as_ptr() as usize;
    let mut out = ParsedBlob { records: Vec::with_capacity(items.len()), without_id: 0, throttled: Vec::new() };
    for item in items {
        let text = item.get();
        let start = text.as_ptr() as usize - base;
        out.push(text, start..start + text.len());
    }
    Ok(out)
}

/// The common case read once: an array of objects whose heads parse. Each record is read
/// where it lies, by `json_scan` (or, for a record it leaves, by serde_json), and its raw range
/// runs from where the reader started to where it stopped. Splitting first and parsing each
/// record again read every byte twice, a third of a small blob's parse time. Anything unusual
/// (a record that is not such an object, bad JSON anywhere) returns `None`, and
/// `parse_in_two_passes` decides.
fn parse_in_one_pass(body: &[u8]) -> Option<ParsedBlob> {
    // UTF-8 checked once for the whole blob: each record's text is then a slice of it, and
    // neither reader checks each string it borrows again.
    let all = std::str::from_utf8(body).ok()?;
    let skip_ws = |i| json_scan::ws(body, i);
    let mut out = ParsedBlob { records: Vec::new(), without_id: 0, throttled: Vec::new() };
    let mut pos = skip_ws(0);
    if body.get(pos) != Some(&b'[') {
        return None;
    }
    pos = skip_ws(pos + 1);
    if body.get(pos) == Some(&b']') {
        return (skip_ws(pos + 1) == body.len()).then_some(out);
    }
    loop {
        if body.get(pos) != Some(&b'{') {
            return None;
        }
        let (head, end) = record_head::read_at(all, pos)?;
        if out.records.is_empty() {
            // Room for as many records as the first one's size suggests (not a doubling every
            // few), within reason: a tiny first record must not reserve for thousands.
            out.records.reserve((body.len() / (end - pos).max(1)).min(1024));
        }
        out.push_head(head, all.get(pos..end)?, pos..end);
        pos = skip_ws(end);
        match body.get(pos) {
            Some(b',') => pos = skip_ws(pos + 1),
            Some(b']') => return (skip_ws(pos + 1) == body.len()).then_some(out),
            _ => return None,
        }
    }
}

impl ParsedBlob {
    /// Adds one record of the unified audit log schema (a blob's item, or the `auditData` of an
    /// audit log query record: the same record, so the same key), `raw` being its range.
    pub fn push(&mut self, text: &str, raw: std::ops::Range<usize>) {
        self.push_head(record_head::read_whole(text), text, raw);
    }

    fn push_head(&mut self, head: Fields<'_>, text: &str, raw: std::ops::Range<usize>) {
        if let Some(m) = record_head::throttled_mailbox(&head) {
            self.throttled.push((self.records.len(), m));
        }
        let own_time = head.creation_time.as_deref().and_then(parse_time_ms);
        let event_time_ms = own_time.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let (key, id) = match head.id {
            Some(id) if !id.is_empty() => (key_for_id(&id), id.into_owned()),
            _ => {
                // No Id: fall back to the content hash so the record is still delivered once.
                self.without_id += 1;
                let k = hash16(&[b"raw", text.as_bytes()]);
                (k, hex::encode(k))
            }
        };
        self.records.push(PageRecord {
            key,
            id_key: None,
            id,
            event_time_ms,
            key_time_ms: own_time.unwrap_or(0),
            raw,
            envelope: None,
        });
    }
}

/// A GUID id is its own 16-byte key; anything else is hashed to 16 bytes.
pub fn key_for_id(id: &str) -> [u8; 16] {
    match uuid::Uuid::try_parse(id) {
        Ok(u) => *u.as_bytes(),
        Err(_) => hash16(&[b"id", id.as_bytes()]),
    }
}

pub fn hash16(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// Parses Microsoft timestamps: `2015-06-29T20:03:19` (naive UTC), with optional fraction and `Z`/offset.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    if let Some(ms) = parse_usual_time_ms(s) {
        return Some(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc().timestamp_millis())
}

/// The form nearly every record carries, `YYYY-MM-DDTHH:MM:SS`, a fraction of up to nine
/// digits and an optional `Z`, read by hand: chrono's format interpreter (tried after its
/// RFC 3339 reader refused the missing zone) was about 7% of the parse time. Anything else
/// (offsets, leap seconds) is left to chrono.
fn parse_usual_time_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let mut rest = &b[19..];
    let mut ms = 0;
    if let [b'.', fraction @ ..] = rest {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        // Milliseconds truncated, as chrono's `timestamp_millis` does.
        ms = (0..3).fold(0, |n, i| n * 10 + if i < digits { u32::from(fraction[i] - b'0') } else { 0 });
        rest = &fraction[digits..];
    }
    if !matches!(rest, [] | [b'Z']) {
        return None;
    }
    let t = date.and_hms_milli_opt(num(11..13)?, num(14..16)?, num(17..19)?, ms)?;
    Some(t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ranges_are_exact_and_keys_ignore_key_order() {
        let body = br#"[ {"Id":"5d1c7e4a-0000-4000-8000-000000000001","CreationTime":"2026-09-29T07:43:02","A":1},
            {"A":1, "CreationTime":"2026-09-29T07:43:02", "Id":"5d1c7e4a-0000-4000-8000-000000000001"}, {"x":2} ]"#;
        let p = parse_management_blob(body).unwrap();
        assert_eq!(p.records.len(), 3);
        assert_eq!(
            &body[p.records[0].raw.clone()],
            br#"{"Id":"5d1c7e4a-0000-4000-8000-000000000001","CreationTime":"2026-09-29T07:43:02","A":1}"#
        );
        assert_eq!(p.records[0].key, p.records[1].key);
        assert_eq!(p.records[0].event_time_ms, 1_790_667_782_000);
        assert_eq!(p.without_id, 1);
        assert_eq!(&body[p.records[2].raw.clone()], br#"{"x":2}"#);
    }

    #[test]
    fn a_throttled_mail_items_accessed_record_names_its_mailbox() {
        let body = br#"[
            {"Id":"a","Operation":"MailItemsAccessed","MailboxOwnerUPN":"ceo@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"True"}]},
            {"Id":"b","Operation":"MailItemsAccessed","MailboxOwnerUPN":"cfo@contoso.com","OperationProperties":[{"Name":"IsThrottled","Value":"False"}]},
            {"Id":"c","Operation":"Send","MailboxOwnerUPN":"x@contoso.com","OperationProperties":[{"Name":"IsThrottled","Value":"True"}]},
            {"Id":"d","Operation":"MailItemsAccessed","OperationProperties":"not a list"}
        ]"#;
        let p = parse_management_blob(body).unwrap();
        assert_eq!(p.records.len(), 4);
        assert_eq!(p.throttled, vec![(0, "ceo@contoso.com".to_string())]);
    }

    /// Escapes in a field the collector reads, or in a field's name, are decoded by serde_json:
    /// the scanner leaves such records to it, and the rest of the blob is still read in one pass.
    #[test]
    fn a_record_the_scanner_leaves_is_read_by_serde_json() {
        let body = br#"[{"Id":"5d1c7e4a-0000-4000-8000-00000000000\u0031","CreationTime":"2026-09-29T07:43:02"},
            {"I\u0064":"x","CreationTime":null},{"Id":"plain"}]"#;
        let p = parse_in_one_pass(body).expect("read in one pass");
        let ids: Vec<&str> = p.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["5d1c7e4a-0000-4000-8000-000000000001", "x", "plain"]);
        assert_eq!(p.records[0].key, key_for_id("5d1c7e4a-0000-4000-8000-000000000001"));
        assert_eq!(p.records[0].key_time_ms, 1_790_667_782_000);
        assert_eq!(p.records[1].key_time_ms, 0);
        assert_eq!(&body[p.records[2].raw.clone()], br#"{"Id":"plain"}"#);
    }

    #[test]
    fn not_an_array_is_an_error() {
        assert!(parse_management_blob(b"{\"error\":1}").is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// What a reading says of each record; the event time only where the record has its
        /// own (otherwise it is the time of reading).
        fn same_reading(p: &ParsedBlob) -> Vec<String> {
            p.records
                .iter()
                .map(|r| {
                    let own = (r.key_time_ms != 0).then_some(r.event_time_ms);
                    format!("{:?} {} {} {:?} {:?}", r.key, r.id, r.key_time_ms, own, r.raw)
                })
                .collect()
        }

        proptest! {
            #[test]
            fn any_bytes_are_parsed_or_refused_never_a_panic(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
                let _ = parse_management_blob(&body);
                let _ = crate::sources::management::protocol::parse_listing(&body);
                let _ = crate::sources::graph::protocol::parse_page(&body);
            }

            /// The hand-read form gives what chrono gives, to the millisecond.
            #[test]
            fn usual_timestamps_read_as_chrono_reads_them(
                secs in 0i64..4_102_444_800, nanos in 0u32..1_000_000_000, digits in 0usize..=9, zulu in any::<bool>()
            ) {
                let t = chrono::DateTime::from_timestamp(secs, nanos).unwrap().naive_utc();
                let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
                if digits > 0 {
                    s.push('.');
                    s.push_str(&format!("{nanos:09}")[..digits]);
                }
                if zulu {
                    s.push('Z');
                }
                let slow = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
                    .unwrap().and_utc().timestamp_millis();
                prop_assert_eq!(parse_usual_time_ms(&s), Some(slow));
            }

            /// Odd records read in one pass, or not at all: never differently from two passes.
            #[test]
            fn one_pass_agrees_with_two(items in proptest::collection::vec(prop_oneof![
                Just(r#"{"Id":"5d1c7e4a-0000-4000-8000-000000000001","CreationTime":"2026-09-29T07:43:02.5"}"#.to_string()),
                Just(r#"{"Id":5}"#.to_string()),
                Just(r#"{"Id":"a","Id":"b"}"#.to_string()),
                Just(r#"[1,2]"#.to_string()),
                Just(r#""text""#.to_string()),
                Just(r#"{"CreationTime":"2026-02-30T00:00:00","Operation":"MailItemsAccessed","OperationProperties":[{"Name":"IsThrottled","Value":"True"}]}"#.to_string()),
                "\\PC{0,12}".prop_map(|x| format!("{{\"Id\":{}}}", serde_json::to_string(&x).unwrap())),
            ], 0..6), tail in prop_oneof![Just(""), Just(" "), Just("x"), Just(",")]) {
                let body = format!("[{}]{tail}", items.join(","));
                let slow = parse_in_two_passes(body.as_bytes());
                if let Some(fast) = parse_in_one_pass(body.as_bytes()) {
                    let slow = slow.expect("what one pass reads, two passes read");
                    prop_assert_eq!(same_reading(&fast), same_reading(&slow));
                    prop_assert_eq!(fast.throttled, slow.throttled);
                    prop_assert_eq!(fast.without_id, slow.without_id);
                }
            }

            /// Records in any order, spacing and content: each raw range is exactly the record.
            #[test]
            fn raw_ranges_are_the_records_exactly(values in proptest::collection::vec(("[a-z0-9-]{0,36}", "\\PC{0,30}", any::<bool>()), 0..20)) {
                let items: Vec<String> = values.iter().map(|(id, x, spaced)| {
                    let id = serde_json::to_string(id).unwrap();
                    let x = serde_json::to_string(x).unwrap();
                    if *spaced { format!("{{ \"X\" : {x},\n \"Id\" : {id} }}") } else { format!("{{\"Id\":{id},\"X\":{x}}}") }
                }).collect();
                let body = format!("[ {} ]", items.join(" ,\n"));
                let p = parse_in_one_pass(body.as_bytes()).expect("an array of objects is read in one pass");
                let slow = parse_in_two_passes(body.as_bytes()).unwrap();
                prop_assert_eq!(same_reading(&p), same_reading(&slow));
                prop_assert_eq!(p.records.len(), items.len());
                for (r, item) in p.records.iter().zip(&items) {
                    prop_assert_eq!(&body.as_bytes()[r.raw.clone()], item.as_bytes());
                }
                let page = format!("{{\"value\":{body},\"@odata.nextLink\":\"https://graph.microsoft.com/v1.0/x?$skiptoken=1\"}}");
                let (ranges, next) = crate::sources::graph::protocol::parse_page(page.as_bytes()).unwrap();
                prop_assert_eq!(ranges.len(), items.len());
                for (r, item) in ranges.iter().zip(&items) {
                    prop_assert_eq!(&page.as_bytes()[r.clone()], item.as_bytes());
                }
                prop_assert!(next.is_some());
            }
        }
    }
}
