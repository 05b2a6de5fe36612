//! Byte sizes in config: an integer, or a string such as "10GiB", "512 MB", "64k".

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{0}` is not a size (try 512MiB or 10GiB)")]
    NotASize(String),
    #[error("unknown size unit `{unit}` in `{text}`")]
    Unit { unit: String, text: String },
    #[error("`{0}` is larger than 16 EiB")]
    TooLarge(String),
}

pub fn parse(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| SizeError::NotASize(s.to_string()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        u => return Err(SizeError::Unit { unit: u.to_string(), text: s.to_string() }),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(SizeError::TooLarge(s.to_string()));
    }
    Ok(bytes as u64)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        N(u64),
        S(String),
    }
    match Either::deserialize(d)? {
        Either::N(n) => Ok(n),
        Either::S(s) => parse(&s).map_err(serde::de::Error::custom),
    }
}

/// For `#[serde(default, deserialize_with = "opt")]` on an `Option<u64>` field.
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse("10GiB").unwrap(), 10 << 30);
        assert_eq!(super::parse("512 MB").unwrap(), 512_000_000);
        assert_eq!(super::parse("42").unwrap(), 42);
        assert!(super::parse("ten").is_err());
        assert!(super::parse("5 parsecs").is_err());
        assert!(super::parse("99999999999999TiB").is_err());
    }
}
