//! What an HTTP receiver's answer means for the batch: delivered, retry (how soon), or refused.
//!
//! 401, 403 and 404 say the credential or URL is wrong, not that a record is: they hold the
//! stream (loudly, in logs and `status`) instead of dead-lettering every record. Only answers
//! that blame the payload (400, 413, 415, 422 and other 4xx) bisect the batch.

use std::time::Duration;

use reqwest::StatusCode;

use crate::sinks::SinkError;

/// Seconds form of `Retry-After`; the HTTP-date form is rare for these receivers.
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `body` is a short excerpt of the answer, already scrubbed of secrets.
pub fn status(code: StatusCode, after: Option<Duration>, body: &str) -> Result<(), SinkError> {
    let msg = format!("HTTP {}{}{}", code.as_u16(), if body.is_empty() { "" } else { ": " }, body);
    match code.as_u16() {
        200..=299 => Ok(()),
        // Redirects are not followed (see `build_client`): the URL is wrong, and no record of
        // this batch reached anyone.
        300..=399 => Err(SinkError::Retryable(format!(
            "HTTP {} redirect: the receiver moved; set the sink's url to where it points (nothing was delivered)",
            code.as_u16()
        ))),
        // Sumo Logic drops the data on 429 and expects a resend; every receiver here means "later".
        408 | 429 => Err(SinkError::Throttled { message: msg, after }),
        401 | 403 => Err(SinkError::Retryable(format!("{msg} (check the sink's credential)"))),
        404 => Err(SinkError::Retryable(format!("{msg} (check the sink's URL)"))),
        400..=499 => Err(SinkError::Rejected(msg)),
        _ if after.is_some() => Err(SinkError::Throttled { message: msg, after }),
        _ => Err(SinkError::Retryable(msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_receiver_answers() {
        let s = |c: u16| status(StatusCode::from_u16(c).unwrap(), None, "");
        assert!(s(200).is_ok() && s(204).is_ok());
        assert!(matches!(s(429), Err(SinkError::Throttled { .. })));
        assert!(matches!(s(408), Err(SinkError::Throttled { .. })));
        assert!(matches!(s(400), Err(SinkError::Rejected(_))));
        assert!(matches!(s(413), Err(SinkError::Rejected(_))));
        assert!(matches!(s(401), Err(SinkError::Retryable(_))));
        assert!(matches!(s(404), Err(SinkError::Retryable(_))));
        assert!(matches!(s(503), Err(SinkError::Retryable(_))));
        assert!(matches!(s(302), Err(SinkError::Retryable(m)) if m.contains("nothing was delivered")));
        assert!(matches!(s(301), Err(SinkError::Retryable(_))) && matches!(s(307), Err(SinkError::Retryable(_))));
        let t = status(StatusCode::SERVICE_UNAVAILABLE, Some(Duration::from_secs(7)), "busy");
        assert!(matches!(t, Err(SinkError::Throttled { after: Some(d), .. }) if d.as_secs() == 7));
    }
}
