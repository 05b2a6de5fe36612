//! Byte sizes in config: an integer, or a string such as "10GiB", "512 MB", "64k".

use serde::{Deserialize, Deserializer};

pub fn parse(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a size (try 512MiB or 10GiB)"))?;
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
        u => return Err(format!("unknown size unit `{u}` in `{s}`")),
    };
    Ok((n * mult as f64) as u64)
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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse("10GiB").unwrap(), 10 << 30);
        assert_eq!(super::parse("512 MB").unwrap(), 512_000_000);
        assert_eq!(super::parse("42").unwrap(), 42);
        assert!(super::parse("ten").is_err());
        assert!(super::parse("5 parsecs").is_err());
    }
}
