//! A hostile or broken upstream, for the trust-boundary tests: links that lead to another host,
//! a gzip bomb in place of a blob, an absurd `Retry-After`, `Date` headers from the future, and
//! skip tokens that expire mid-window. Each is off unless its scenario knob is set.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Attacks {
    /// Base URL (say `http://127.0.0.1:PORT`) that the next-page and content links of
    /// `foreign_link_streams` point to instead of the simulator.
    pub foreign_link_base: Option<String>,
    /// Content types (their `NextPageUri` and `contentUri`) and Graph streams (their
    /// `@odata.nextLink`, e.g. `directory_audits`) whose links point away.
    pub foreign_link_streams: Vec<String>,
    /// The first `bomb_blobs` blobs of this content type serve a gzip body of `bomb_bytes`
    /// zeros instead of their records (their records then count as lost at the source).
    pub bomb_content_type: Option<String>,
    pub bomb_blobs: u32,
    pub bomb_bytes: u64,
    /// Listings of this content type answer 429 with `Retry-After: retry_after_secs`, always.
    pub retry_after_content_type: Option<String>,
    pub retry_after_secs: u64,
    /// Every `bad_date_every`th response carries a `Date` this many seconds in the future.
    pub bad_date_every: u64,
    pub bad_date_ahead_secs: i64,
    /// The first `graph_skiptoken_expired` Graph requests for a next page answer 400, as an
    /// expired skip token does.
    pub graph_skiptoken_expired: u32,
    /// The first `unavailable_blobs` blobs of this content type answer 503 to every fetch, so
    /// they stay to be fetched until they age out (their records count as lost at the source).
    pub unavailable_content_type: Option<String>,
    pub unavailable_blobs: u32,
    /// Content types and Graph streams whose every page links to itself as the next page,
    /// forever: a pagination loop.
    pub looping_streams: Vec<String>,
    /// Every request (token endpoint included) is accepted and never answered: an endpoint
    /// that hangs.
    pub hang: bool,
}

/// Counters the attacks need while the simulator runs.
#[derive(Debug, Default)]
pub struct AttackState {
    responses: AtomicU64,
    skiptokens_refused: AtomicU32,
    bomb: OnceLock<axum::body::Bytes>,
}

impl Attacks {
    pub fn loops(&self, stream: &str) -> bool {
        self.looping_streams.iter().any(|s| s == stream)
    }

    /// Where links of `stream` point, if away.
    pub fn foreign_base(&self, stream: &str) -> Option<&str> {
        self.foreign_link_base.as_deref().filter(|_| self.foreign_link_streams.iter().any(|s| s == stream))
    }
}

impl AttackState {
    /// Whether this response gets a `Date` from the future.
    pub fn bad_date(&self, a: &Attacks) -> bool {
        a.bad_date_every > 0 && self.responses.fetch_add(1, Ordering::Relaxed).is_multiple_of(a.bad_date_every)
    }

    /// Whether this next-page request is answered as an expired skip token.
    pub fn refuse_skiptoken(&self, a: &Attacks) -> bool {
        self.skiptokens_refused
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < a.graph_skiptoken_expired).then_some(n + 1))
            .is_ok()
    }

    /// The bomb's body, made once: about a thousandth of `bytes`.
    pub fn bomb(&self, bytes: u64) -> axum::body::Bytes {
        self.bomb.get_or_init(|| zero_gzip(bytes).into()).clone()
    }
}

/// A valid gzip stream of `total` zero bytes, built without compressing all of them: after the
/// first blocks the compressor's output for a MiB of zeros repeats, so it is copied.
pub fn zero_gzip(total: u64) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    const MIB: usize = 1 << 20;
    let zeros = vec![0u8; MIB];
    let mut c = Compress::new(Compression::best(), false);
    let mut block = |input: &[u8], flush: FlushCompress| {
        let mut out = Vec::with_capacity(input.len() / 500 + 64);
        let start = c.total_in();
        loop {
            let done = (c.total_in() - start) as usize;
            out.reserve(4096);
            c.compress_vec(&input[done..], &mut out, flush).expect("deflate");
            if (c.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
                return out;
            }
        }
    };
    let mibs = (total / MIB as u64).max(2);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
    out.extend(block(&zeros, FlushCompress::Sync));
    let steady = block(&zeros, FlushCompress::Sync);
    let again = block(&zeros, FlushCompress::Sync);
    out.extend(&steady);
    out.extend(&again);
    for _ in 3..mibs {
        if steady == again {
            out.extend(&steady);
        } else {
            out.extend(block(&zeros, FlushCompress::Sync));
        }
    }
    out.extend(block(&[], FlushCompress::Finish));
    // CRC-32 of `mibs` MiB of zeros, by combining instead of hashing every byte.
    let mut one = crc32fast::Hasher::new();
    one.update(&zeros);
    let mut crc = crc32fast::Hasher::new();
    let mut k = mibs;
    let mut pow = one;
    while k > 0 {
        if k & 1 == 1 {
            crc.combine(&pow);
        }
        let p = pow.clone();
        pow.combine(&p);
        k >>= 1;
    }
    out.write_all(&crc.finalize().to_le_bytes()).expect("vec");
    out.write_all(&((mibs * MIB as u64) as u32).to_le_bytes()).expect("vec");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bomb_is_a_valid_gzip_of_zeros() {
        let body = super::zero_gzip(64 << 20);
        assert!(body.len() < 200 << 10, "{} bytes", body.len());
        let mut d = flate2::read::GzDecoder::new(&body[..]);
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = std::io::Read::read(&mut d, &mut buf).unwrap();
            if k == 0 {
                break;
            }
            assert!(buf[..k].iter().all(|b| *b == 0));
            n += k as u64;
        }
        assert_eq!(n, 64 << 20, "the trailer's CRC and size check out");
    }
}
