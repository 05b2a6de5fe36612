//! Splitting a JSON array response into raw records, and reading the few fields the collector
//! needs (id, event time) without re-serialising anything.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::store::PageRecord;

#[derive(Debug, thiserror::Error)]
#[error("response is not a JSON array of records: {0}")]
pub struct ParseError(String);

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "Id", borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "CreationTime", borrow, default)]
    creation_time: Option<Cow<'a, str>>,
    #[serde(rename = "Operation", borrow, default)]
    operation: Option<Cow<'a, str>>,
    #[serde(rename = "MailboxOwnerUPN", borrow, default)]
    mailbox: Option<Cow<'a, str>>,
    /// Kept unparsed: only a MailItemsAccessed record's properties are looked into.
    #[serde(rename = "OperationProperties", borrow, default)]
    properties: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Property<'a> {
    #[serde(rename = "Name", borrow, default)]
    name: Cow<'a, str>,
    #[serde(rename = "Value", borrow, default)]
    value: Cow<'a, str>,
}

/// Parsed records of a Management Activity content blob; `raw` ranges point into `body`.
pub struct ParsedBlob {
    pub records: Vec<PageRecord>,
    pub without_id: u64,
    /// Records (by index) saying Exchange throttled MailItemsAccessed auditing of a mailbox.
    pub throttled: Vec<(usize, String)>,
}

/// A MailItemsAccessed record with `IsThrottled` = `True` means Exchange stopped auditing Bind
/// access to that mailbox for 24 hours: every item in it must be assumed read. Returns the
/// mailbox.
fn throttled_mailbox(head: &Head<'_>) -> Option<String> {
    if head.operation.as_deref() != Some("MailItemsAccessed") {
        return None;
    }
    let props: Vec<Property<'_>> = serde_json::from_str(head.properties?.get()).ok()?;
    let throttled =
        props.iter().any(|p| p.name.eq_ignore_ascii_case("IsThrottled") && p.value.eq_ignore_ascii_case("true"));
    throttled.then(|| head.mailbox.as_deref().unwrap_or("(mailbox not named)").to_string())
}

/// Splits a content blob (a JSON array) into its records, keyed by the record `Id`.
///
/// The dedupe key is derived from `Id` and never from the raw text: Microsoft re-delivers the
/// same record with a different key order.
pub fn parse_management_blob(body: &[u8]) -> Result<ParsedBlob, ParseError> {
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

impl ParsedBlob {
    /// Adds one record of the unified audit log schema (a blob's item, or the `auditData` of an
    /// audit log query record: the same record, so the same key), `raw` being its range.
    pub fn push(&mut self, text: &str, raw: std::ops::Range<usize>) {
        let head: Head<'_> = serde_json::from_str(text).unwrap_or(Head {
            id: None,
            creation_time: None,
            operation: None,
            mailbox: None,
            properties: None,
        });
        if let Some(m) = throttled_mailbox(&head) {
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
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc().timestamp_millis())
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

    #[test]
    fn not_an_array_is_an_error() {
        assert!(parse_management_blob(b"{\"error\":1}").is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #[test]
            fn any_bytes_are_parsed_or_refused_never_a_panic(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
                let _ = parse_management_blob(&body);
                let _ = crate::sources::management::protocol::parse_listing(&body);
                let _ = crate::sources::graph::protocol::parse_page(&body);
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
                let p = parse_management_blob(body.as_bytes()).unwrap();
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
