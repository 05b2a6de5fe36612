//! Binary framing of the records inside one spool row.
//!
//! A spool row holds every new record of one ingested page, so the per-row cost of SQLite is
//! paid once per page rather than once per record. Each record is framed as
//! `u32 id_len | id | i64 event_time_ms | u32 raw_len | raw`, little-endian. `raw` is the record's
//! JSON exactly as Microsoft sent it; nothing here re-serialises it.
//!
//! The framed bytes are stored lz4-compressed (`compress`/`decompress`): audit JSON shrinks
//! several times, which cuts the WAL and checkpoint I/O that dominates ingest.

use std::ops::Range;

/// Why a spool row cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("lz4: {0}")]
    Lz4(String),
    #[error("frame overruns row at byte {0}")]
    Overrun(usize),
}

/// One record decoded from a spool row; the byte ranges point into the row's data.
#[derive(Debug, Clone)]
pub struct FramedRecord {
    pub id: Range<usize>,
    pub event_time_ms: i64,
    pub raw: Range<usize>,
    /// The source's own envelope fields (a JSON object), for the envelope option.
    pub envelope: Option<Range<usize>>,
}

/// Set in `id_len` when `u32 len | envelope` follows the id: rows written before envelopes
/// existed never have it (no id is 2 GiB long), so they decode as they always did.
const HAS_ENVELOPE: u32 = 1 << 31;

pub fn encode_into(buf: &mut Vec<u8>, id: &str, event_time_ms: i64, raw: &[u8]) {
    encode_with(buf, id, event_time_ms, raw, None);
}

/// Bytes `encode_with` adds for one record.
pub fn frame_len(id: &str, raw_len: usize, envelope: Option<&str>) -> usize {
    4 + id.len() + envelope.map_or(0, |e| 4 + e.len()) + 8 + 4 + raw_len
}

pub fn encode_with(buf: &mut Vec<u8>, id: &str, event_time_ms: i64, raw: &[u8], envelope: Option<&[u8]>) {
    let flag = if envelope.is_some() { HAS_ENVELOPE } else { 0 };
    buf.extend_from_slice(&(id.len() as u32 | flag).to_le_bytes());
    buf.extend_from_slice(id.as_bytes());
    if let Some(e) = envelope {
        buf.extend_from_slice(&(e.len() as u32).to_le_bytes());
        buf.extend_from_slice(e);
    }
    buf.extend_from_slice(&event_time_ms.to_le_bytes());
    buf.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    buf.extend_from_slice(raw);
}

/// Compresses a row's framed records for storage (size-prefixed lz4 block).
pub fn compress(framed: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(framed)
}

/// `compress` into a buffer kept across pages; returns the stored form, which borrows it.
///
/// `compress` zeroes an output buffer of the worst-case size for every page, then shrinks it
/// (a copy): on small blobs the zeroing alone was 3% of the daemon's instructions. The buffer
/// is zeroed only as it grows, and the stored bytes go to SQLite straight from it.
pub fn compress_reusing<'a>(framed: &[u8], scratch: &'a mut Vec<u8>) -> std::borrow::Cow<'a, [u8]> {
    let need = 4 + lz4_flex::block::get_maximum_output_size(framed.len());
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    let (size, out) = scratch.split_at_mut(4);
    size.copy_from_slice(&(framed.len() as u32).to_le_bytes());
    match lz4_flex::block::compress_into(framed, &mut out[..need - 4]) {
        Ok(n) => std::borrow::Cow::Borrowed(&scratch[..4 + n]),
        // Cannot happen (the room is lz4's own worst case); if it ever did, the page still goes.
        Err(_) => std::borrow::Cow::Owned(compress(framed)),
    }
}

/// Inverse of `compress`.
pub fn decompress(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    lz4_flex::decompress_size_prepended(stored).map_err(|e| CodecError::Lz4(e.to_string()))
}

/// Decodes every record frame; an error names the offset where the framing broke.
pub fn decode(data: &[u8]) -> Result<Vec<FramedRecord>, CodecError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let head = read_u32(data, &mut pos)?;
        let id = take(data, &mut pos, (head & !HAS_ENVELOPE) as usize)?;
        let envelope = match head & HAS_ENVELOPE {
            0 => None,
            _ => {
                let n = read_u32(data, &mut pos)? as usize;
                Some(take(data, &mut pos, n)?)
            }
        };
        let t = read_i64(data, &mut pos)?;
        let raw_len = read_u32(data, &mut pos)? as usize;
        let raw = take(data, &mut pos, raw_len)?;
        out.push(FramedRecord { id, event_time_ms: t, raw, envelope });
    }
    Ok(out)
}

fn take(data: &[u8], pos: &mut usize, n: usize) -> Result<Range<usize>, CodecError> {
    let end = pos.checked_add(n).filter(|e| *e <= data.len()).ok_or(CodecError::Overrun(*pos))?;
    let r = *pos..end;
    *pos = end;
    Ok(r)
}

fn read_u32(data: &[u8], pos: &mut usize) -> Result<u32, CodecError> {
    let r = take(data, pos, 4)?;
    Ok(u32::from_le_bytes(data[r].try_into().expect("4 bytes")))
}

fn read_i64(data: &[u8], pos: &mut usize) -> Result<i64, CodecError> {
    let r = take(data, pos, 8)?;
    Ok(i64::from_le_bytes(data[r].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_bytes_exact() {
        let mut buf = Vec::new();
        encode_into(&mut buf, "a", 5, br#"{"Id":"a", "x" : 1}"#);
        encode_into(&mut buf, "", -1, b"[]");
        let recs = decode(&buf).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(&buf[recs[0].raw.clone()], br#"{"Id":"a", "x" : 1}"#);
        assert_eq!(&buf[recs[0].id.clone()], b"a");
        assert_eq!(recs[1].event_time_ms, -1);
        assert_eq!(&buf[recs[1].raw.clone()], b"[]");
    }

    #[test]
    fn an_envelope_travels_beside_the_record_and_old_frames_still_decode() {
        let mut buf = Vec::new();
        encode_into(&mut buf, "old", 1, b"{}");
        encode_with(&mut buf, "new", 2, br#"{"Id":"new"}"#, Some(br#"{"operation":"Send"}"#));
        let recs = decode(&buf).unwrap();
        assert!(recs[0].envelope.is_none());
        assert_eq!(&buf[recs[1].id.clone()], b"new");
        assert_eq!(&buf[recs[1].envelope.clone().unwrap()], br#"{"operation":"Send"}"#);
        assert_eq!((&buf[recs[1].raw.clone()], recs[1].event_time_ms), (&br#"{"Id":"new"}"#[..], 2));
    }

    #[test]
    fn frame_len_is_what_a_frame_takes() {
        let mut buf = Vec::new();
        encode_with(&mut buf, "id-1", 7, br#"{"Id":"id-1"}"#, None);
        assert_eq!(buf.len(), frame_len("id-1", 13, None));
        let before = buf.len();
        encode_with(&mut buf, "", 0, b"{}", Some(br#"{"op":"x"}"#));
        assert_eq!(buf.len() - before, frame_len("", 2, Some(r#"{"op":"x"}"#)));
    }

    #[test]
    fn compression_round_trips() {
        let mut buf = Vec::new();
        for i in 0..100 {
            encode_into(&mut buf, &format!("id-{i}"), i, br#"{"Operation":"MailItemsAccessed","Workload":"Exchange"}"#);
        }
        let stored = compress(&buf);
        assert!(stored.len() < buf.len() / 3);
        assert_eq!(decompress(&stored).unwrap(), buf);
        assert!(decompress(&stored[..stored.len() / 2]).is_err());
    }

    #[test]
    fn compressing_into_a_kept_buffer_stores_the_same_bytes() {
        let mut scratch = Vec::new();
        // A big page, then smaller ones into the same (larger, dirty) buffer, then an empty one.
        for n in [400, 3, 60, 1, 0] {
            let mut framed = Vec::new();
            for i in 0..n {
                encode_into(&mut framed, &format!("id-{i}"), i, format!(r#"{{"Operation":"Op{}"}}"#, i % 7).as_bytes());
            }
            let stored = compress_reusing(&framed, &mut scratch).into_owned();
            assert_eq!(stored, compress(&framed), "{n} records");
            assert_eq!(decompress(&stored).unwrap(), framed, "{n} records");
        }
        assert!(scratch.len() > 4_000, "the buffer is kept at its largest size");
    }

    #[test]
    fn truncated_row_is_an_error() {
        let mut buf = Vec::new();
        encode_into(&mut buf, "abc", 5, b"{}");
        buf.pop();
        assert!(decode(&buf).is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// Any ids, times and record bytes come back exactly, through lz4 too.
            #[test]
            fn any_records_round_trip(recs in proptest::collection::vec(("\\PC{0,40}", any::<i64>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..30)) {
                let mut buf = Vec::new();
                for (id, t, raw) in &recs {
                    encode_into(&mut buf, id, *t, raw);
                }
                let stored = compress(&buf);
                let back = decompress(&stored).unwrap();
                prop_assert_eq!(&back, &buf);
                let framed = decode(&back).unwrap();
                prop_assert_eq!(framed.len(), recs.len());
                for (f, (id, t, raw)) in framed.iter().zip(&recs) {
                    prop_assert_eq!(&back[f.id.clone()], id.as_bytes());
                    prop_assert_eq!(f.event_time_ms, *t);
                    prop_assert_eq!(&back[f.raw.clone()], &raw[..]);
                }
            }

            /// Any corruption of a stored row is an error or a different decoding, never a panic.
            #[test]
            fn any_corruption_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), flip in any::<usize>()) {
                let _ = decode(&bytes);
                let _ = decompress(&bytes);
                let mut buf = Vec::new();
                encode_into(&mut buf, "id", 1, br#"{"Id":"id"}"#);
                let mut stored = compress(&buf);
                let i = flip % stored.len();
                stored[i] ^= 0x5a;
                if let Ok(d) = decompress(&stored) {
                    let _ = decode(&d);
                }
            }
        }
    }
}
