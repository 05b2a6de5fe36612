//! What the collector accepts from an upstream: links only to the configured endpoint, and
//! bodies only up to a size and a compression ratio.
//!
//! INVARIANT: a bearer token is only ever attached to a request whose scheme is `https` and
//! whose host and port equal the stream's configured endpoint. A link in a response that
//! points anywhere else (a tampered `NextPageUri`, `contentUri` or `@odata.nextLink`) is
//! refused before any request is made.

use std::io::Write;

/// Scheme, host and port of the configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    host: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundaryError {
    #[error(
        "refused to follow a link to {shown}: only https://{expected} is trusted with this tenant's token, which was not sent"
    )]
    ForeignLink { shown: String, expected: String },
    #[error("{what} is over {limit} bytes once decoded; refused")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("{what} decompresses more than {ratio}:1 (a compression bomb?); refused")]
    Bomb { what: &'static str, ratio: u64 },
    #[error("{what}: gzip body unreadable: {message}")]
    Gzip { what: &'static str, message: String },
}

impl Origin {
    /// The origin of a configured (already validated, https) endpoint.
    pub fn of(endpoint: &str) -> Option<Origin> {
        let u = url::Url::parse(endpoint).ok()?;
        (u.scheme() == "https").then_some(())?;
        Some(Origin { host: u.host_str()?.to_ascii_lowercase(), port: u.port_or_known_default()? })
    }

    /// `Ok` when `url` may carry the token: https, same host, same port.
    pub fn admits(&self, url: &url::Url) -> Result<(), BoundaryError> {
        let same = url.scheme() == "https"
            && url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && url.port_or_known_default() == Some(self.port);
        if same {
            return Ok(());
        }
        // Scheme, host and port only: a link's path and query may carry anything.
        let shown = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or("?"),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        Err(BoundaryError::ForeignLink { shown, expected: format!("{}:{}", self.host, self.port) })
    }
}

/// Limits on one response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    pub what: &'static str,
    /// Most bytes once decoded.
    pub max_bytes: u64,
    /// Most decoded bytes per compressed byte, checked once `RATIO_GRACE` bytes are decoded.
    pub max_ratio: u64,
}

/// The caps of one tenant's calls: content blobs, everything else, and pages per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub response: BodyLimit,
    pub blob: BodyLimit,
    /// Pages one window may take: a next-page link that loops ends in an error, not forever.
    pub pages_per_window: u32,
}

impl BodyLimits {
    pub fn new(max_response_bytes: u64, max_blob_bytes: u64, max_ratio: u64, pages_per_window: u32) -> BodyLimits {
        BodyLimits {
            response: BodyLimit { what: "response", max_bytes: max_response_bytes, max_ratio },
            blob: BodyLimit { what: "content blob", max_bytes: max_blob_bytes, max_ratio },
            pages_per_window,
        }
    }
}

/// The most `CappedBody::expect` reserves on a server's word: a big page (500 records) fits,
/// and a header that lies holds at most this per call in flight.
const MAX_RESERVE: u64 = 1 << 20;

/// Small bodies can legitimately compress very well (a page of nearly identical rows).
const RATIO_GRACE: u64 = 1 << 20;

/// Accumulates a body chunk by chunk, decoding gzip as it arrives, and stops as soon as a
/// limit is crossed, so a bomb never gets more than a chunk past the limit into memory.
pub struct CappedBody {
    limit: BodyLimit,
    compressed: u64,
    gzip: Option<flate2::write::GzDecoder<Capped>>,
    plain: Capped,
}

struct Capped {
    buf: Vec<u8>,
    max: u64,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() as u64 + data.len() as u64 > self.max {
            return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "over the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CappedBody {
    pub fn new(limit: BodyLimit, gzip: bool) -> CappedBody {
        let sink = || Capped { buf: Vec::new(), max: limit.max_bytes };
        CappedBody { limit, compressed: 0, gzip: gzip.then(|| flate2::write::GzDecoder::new(sink())), plain: sink() }
    }

    /// Makes room up front for a body the server says is `len` bytes, so a blob is not copied
    /// again each time its buffer doubles. Only a hint: what arrives is still capped as it
    /// comes, and a header that lies cannot make the daemon hold more than `MAX_RESERVE`.
    pub fn expect(&mut self, len: u64) {
        let room = len.min(self.limit.max_bytes).min(MAX_RESERVE) as usize;
        match self.gzip.as_mut() {
            None => self.plain.buf.reserve(room),
            // Compressed bytes say little about the decoded size; the usual audit JSON ratio.
            Some(dec) => dec.get_mut().buf.reserve(room.saturating_mul(8).min(MAX_RESERVE as usize)),
        }
    }

    fn too_large(&self) -> BoundaryError {
        BoundaryError::TooLarge { what: self.limit.what, limit: self.limit.max_bytes }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BoundaryError> {
        self.compressed += chunk.len() as u64;
        let limit = self.limit;
        let Some(dec) = self.gzip.as_mut() else {
            return self.plain.write_all(chunk).map_err(|_| self.too_large());
        };
        if let Err(e) = dec.write_all(chunk) {
            return Err(if e.kind() == std::io::ErrorKind::FileTooLarge {
                BoundaryError::TooLarge { what: limit.what, limit: limit.max_bytes }
            } else {
                BoundaryError::Gzip { what: limit.what, message: e.to_string() }
            });
        }
        let decoded = dec.get_ref().buf.len() as u64;
        if decoded > RATIO_GRACE && decoded > self.compressed.saturating_mul(limit.max_ratio) {
            return Err(BoundaryError::Bomb { what: limit.what, ratio: limit.max_ratio });
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Vec<u8>, BoundaryError> {
        match self.gzip {
            None => Ok(self.plain.buf),
            Some(dec) => {
                let what = self.limit.what;
                dec.finish().map(|c| c.buf).map_err(|e| BoundaryError::Gzip { what, message: e.to_string() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn only_the_configured_scheme_host_and_port_get_the_token() {
        let o = Origin::of("https://manage.office.com").unwrap();
        assert!(o.admits(&u("https://manage.office.com/api/v1/x?nextPage=2")).is_ok());
        assert!(o.admits(&u("https://MANAGE.office.com:443/api")).is_ok());
        for bad in [
            "http://manage.office.com/api",
            "https://manage.office.com:8443/api",
            "https://manage.office.com.evil.example/api",
            "https://evil.example/?h=manage.office.com",
            "https://user@evil.example/",
        ] {
            let e = o.admits(&u(bad)).unwrap_err();
            assert!(e.to_string().contains("was not sent"), "{bad}: {e}");
            assert!(!e.to_string().contains("/api"), "the path is not echoed: {e}");
        }
        let local = Origin::of("https://localhost:8443").unwrap();
        assert!(local.admits(&u("https://localhost:8443/x")).is_ok());
        assert!(local.admits(&u("https://localhost:9443/x")).is_err());
        assert!(Origin::of("http://manage.office.com").is_none());
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_promised_length_reserves_room_within_bounds_and_the_caps_still_hold() {
        let limit = BodyLimit { what: "blob", max_bytes: 100, max_ratio: 100 };
        let mut b = CappedBody::new(limit, false);
        b.expect(u64::MAX); // a header that lies
        let cap = b.plain.buf.capacity();
        assert!((100..1024).contains(&cap), "reserved up to the body cap only: {cap}");
        assert!(b.push(&[b'x'; 100]).is_ok());
        assert!(matches!(b.push(b"x"), Err(BoundaryError::TooLarge { limit: 100, .. })));
        let mut big = CappedBody::new(BodyLimit { max_bytes: 1 << 40, ..limit }, true);
        big.expect(u64::MAX);
        let cap = big.gzip.as_ref().unwrap().get_ref().buf.capacity();
        assert_eq!(cap, MAX_RESERVE as usize, "never more than MAX_RESERVE on a server's word");
    }

    #[test]
    fn bodies_are_capped_decoded_and_bombs_stop_early() {
        let limit = BodyLimit { what: "page", max_bytes: 64 << 20, max_ratio: 100 };
        let text = br#"[{"Id":"a"}]"#;
        let mut b = CappedBody::new(limit, true);
        b.push(&gz(text)).unwrap();
        assert_eq!(b.finish().unwrap(), text);
        // 200 MiB of zeros compress to ~200 KiB: stopped after the first chunks, not at 64 MiB.
        let bomb = gz(&vec![0u8; 200 << 20]);
        let mut b = CappedBody::new(limit, true);
        let mut r = Ok(());
        for c in bomb.chunks(16 << 10) {
            r = b.push(c);
            if r.is_err() {
                break;
            }
        }
        assert!(matches!(r, Err(BoundaryError::Bomb { .. })), "{r:?}");
        let mut plain = CappedBody::new(BodyLimit { max_bytes: 10, ..limit }, false);
        assert!(plain.push(b"0123456789").is_ok());
        assert!(matches!(plain.push(b"x"), Err(BoundaryError::TooLarge { limit: 10, .. })));
        let mut broken = CappedBody::new(limit, true);
        let _ = broken.push(b"\x1f\x8b\x08\x00garbage");
        assert!(broken.finish().is_err());
    }
}
