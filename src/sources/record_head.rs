//! The few fields the collector reads of a unified audit log record (id, time, operation,
//! mailbox, operation properties), borrowed from the record's text.
//!
//! Two readers give the same `Fields`: `json_scan`, fast, for the records it can decide, and
//! serde_json for the rest. What serde_json refuses is refused whichever reader ran first.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json_scan;

/// The fields of a record the collector reads, as serde_json reads them.
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

/// The same fields, however they were read: by serde_json, or found by `json_scan`.
#[derive(Default)]
pub(super) struct Fields<'a> {
    pub id: Option<Cow<'a, str>>,
    pub creation_time: Option<Cow<'a, str>>,
    pub operation: Option<Cow<'a, str>>,
    pub mailbox: Option<Cow<'a, str>>,
    /// The raw JSON of `OperationProperties`.
    pub properties: Option<&'a str>,
}

impl<'a> From<Head<'a>> for Fields<'a> {
    fn from(h: Head<'a>) -> Fields<'a> {
        Fields {
            id: h.id,
            creation_time: h.creation_time,
            operation: h.operation,
            mailbox: h.mailbox,
            properties: h.properties.map(RawValue::get),
        }
    }
}

#[derive(Deserialize)]
struct Property<'a> {
    #[serde(rename = "Name", borrow, default)]
    name: Cow<'a, str>,
    #[serde(rename = "Value", borrow, default)]
    value: Cow<'a, str>,
}

/// The record (an object) at `pos` of a blob's text, and where it ends: `None` when it is not
/// one serde_json would read.
pub(super) fn read_at(all: &str, pos: usize) -> Option<(Fields<'_>, usize)> {
    if let Some(found) = scan(all, pos) {
        return Some(found);
    }
    let mut reader = serde_json::Deserializer::from_str(all.get(pos..)?).into_iter::<Head<'_>>();
    let head = reader.next()?.ok()?;
    Some((head.into(), pos + reader.byte_offset()))
}

/// A whole text as one record; what does not read as one has none of the fields.
pub(super) fn read_whole(text: &str) -> Fields<'_> {
    serde_json::from_str::<Head<'_>>(text).map(Fields::from).unwrap_or_default()
}

/// The record at `pos` read by `json_scan`, with its end; `None` leaves it to serde_json,
/// which decides: a field named twice (serde_json refuses it), a field that is not a string
/// without escapes or null, an escaped name, or anything the scanner does not accept.
fn scan(all: &str, pos: usize) -> Option<(Fields<'_>, usize)> {
    let mut head = Fields::default();
    let mut named = [false; 5];
    let end = json_scan::scan_object(all.as_bytes(), pos, |key, value| {
        let slot = match key {
            b"Id" => 0,
            b"CreationTime" => 1,
            b"Operation" => 2,
            b"MailboxOwnerUPN" => 3,
            b"OperationProperties" => 4,
            _ => return true,
        };
        if std::mem::replace(&mut named[slot], true) {
            return false;
        }
        let raw = &all[value];
        if raw == "null" {
            return true;
        }
        if slot == 4 {
            head.properties = Some(raw);
            return true;
        }
        let Some(text) =
            raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).filter(|t| !t.as_bytes().contains(&b'\\'))
        else {
            return false;
        };
        let field = match slot {
            0 => &mut head.id,
            1 => &mut head.creation_time,
            2 => &mut head.operation,
            _ => &mut head.mailbox,
        };
        *field = Some(Cow::Borrowed(text));
        true
    })?;
    Some((head, end))
}

/// A MailItemsAccessed record with `IsThrottled` = `True` means Exchange stopped auditing Bind
/// access to that mailbox for 24 hours: every item in it must be assumed read. Returns the
/// mailbox.
pub(super) fn throttled_mailbox(head: &Fields<'_>) -> Option<String> {
    if head.operation.as_deref() != Some("MailItemsAccessed") {
        return None;
    }
    let props: Vec<Property<'_>> = serde_json::from_str(head.properties?).ok()?;
    let throttled =
        props.iter().any(|p| p.name.eq_ignore_ascii_case("IsThrottled") && p.value.eq_ignore_ascii_case("true"));
    throttled.then(|| head.mailbox.as_deref().unwrap_or("(mailbox not named)").to_string())
}
