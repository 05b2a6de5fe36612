//! What the pipeline's unit tests share: roomy spool settings and a stream of tenant `t`.

use std::sync::Arc;
use std::time::Duration;

use super::{Pipeline, StreamHandle, StreamKey};

pub fn settings() -> super::config::SpoolSettings {
    super::config::SpoolSettings {
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(86_400),
        seen_ttl: Duration::from_secs(8 * 86_400),
        prune_interval: Duration::from_secs(60),
        min_free_bytes: 1 << 20,
        max_dead_letter_bytes: 1 << 30,
    }
}

/// The Management Activity stream `name` of tenant `t`.
pub async fn stream(p: &Arc<Pipeline>, name: &str) -> StreamHandle {
    p.stream(StreamKey::new("t", "management", name), Duration::from_secs(7 * 86_400)).await.unwrap()
}
