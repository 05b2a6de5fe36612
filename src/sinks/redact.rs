//! Receiver URLs can carry a secret (a Sumo Logic collector code is the whole credential). Logs,
//! errors and `status` only ever see the redacted form.

/// Keeps scheme, host and port; replaces the path and query with `/***` when there is one.
pub fn url(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or("");
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = if u.path() != "/" && !u.path().is_empty() || u.query().is_some() { "/***" } else { "" };
    format!("{}://{host}{port}{hidden}", u.scheme())
}

/// Removes every occurrence of each secret from a message (a receiver may echo one back).
pub fn scrub(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hides_path_and_query() {
        let u = url::Url::parse("https://collectors.sumologic.com/receiver/v1/http/ZaVnC4dhaV3_secret").unwrap();
        assert_eq!(super::url(&u), "https://collectors.sumologic.com/***");
        let u = url::Url::parse("https://hec.example:8088").unwrap();
        assert_eq!(super::url(&u), "https://hec.example:8088");
        assert_eq!(super::scrub("bad token abcd1234 here", &["abcd1234".into()]), "bad token *** here");
    }
}
