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
}

pub fn encode_into(buf: &mut Vec<u8>, id: &str, event_time_ms: i64, raw: &[u8]) {
    buf.extend_from_slice(&(id.len() as u32).to_le_bytes());
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(&event_time_ms.to_le_bytes());
    buf.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    buf.extend_from_slice(raw);
}

/// Compresses a row's framed records for storage (size-prefixed lz4 block).
pub fn compress(framed: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(framed)
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
        let id_len = read_u32(data, &mut pos)? as usize;
        let id = take(data, &mut pos, id_len)?;
        let t = read_i64(data, &mut pos)?;
        let raw_len = read_u32(data, &mut pos)? as usize;
        let raw = take(data, &mut pos, raw_len)?;
        out.push(FramedRecord { id, event_time_ms: t, raw });
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
