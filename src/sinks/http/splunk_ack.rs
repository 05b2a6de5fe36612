//! Splunk HEC indexer acknowledgement: a 200 from HEC only means "looked valid"; the data is safe
//! once `/services/collector/ack` reports its `ackId` true. Until then the batch is not confirmed,
//! and if the acknowledgement does not come in time the batch is sent again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::sinks::SinkError;

/// The `ackId` of a HEC event response (`{"text":"Success","code":0,"ackId":7}`).
pub fn ack_id(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?.get("ackId")?.as_u64()
}

pub struct AckPoll<'a> {
    pub client: &'a reqwest::Client,
    pub url: url::Url,
    pub token: &'a str,
    pub channel: &'a str,
    pub timeout: Duration,
    pub poll_interval: Duration,
}

impl AckPoll<'_> {
    /// Waits until every id is acknowledged. Errors are retryable: the caller resends the batch.
    pub async fn wait(&self, ids: Vec<u64>) -> Result<(), SinkError> {
        let mut pending: BTreeSet<u64> = ids.into_iter().collect();
        let start = Instant::now();
        // Indexing usually takes well under a second: poll early, then settle at the interval.
        let mut delay = Duration::from_millis(20);
        while !pending.is_empty() {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.poll_interval);
            let body = serde_json::json!({ "acks": pending.iter().collect::<Vec<_>>() }).to_string();
            let resp = self
                .client
                .post(self.url.clone())
                .header("Authorization", format!("Splunk {}", self.token))
                .header("X-Splunk-Request-Channel", self.channel)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    SinkError::Retryable(format!("ack poll: {}", crate::http::error_chain(&e.without_url())))
                })?;
            let status = resp.status();
            let text = resp.bytes().await.unwrap_or_default();
            if !status.is_success() {
                return Err(SinkError::Retryable(format!(
                    "ack poll: HTTP {}: {}",
                    status.as_u16(),
                    String::from_utf8_lossy(&text[..text.len().min(300)])
                )));
            }
            let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            if let Some(m) = v.get("acks").and_then(|a| a.as_object()) {
                for (k, done) in m {
                    if done.as_bool() == Some(true)
                        && let Ok(id) = k.parse::<u64>()
                    {
                        pending.remove(&id);
                    }
                }
            }
            if !pending.is_empty() && start.elapsed() > self.timeout {
                return Err(SinkError::Retryable(format!(
                    "indexer acknowledgement for {} request(s) not received within {:?}; resending",
                    pending.len(),
                    self.timeout
                )));
            }
        }
        Ok(())
    }
}
