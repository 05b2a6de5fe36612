//! Sinks: where spooled records go. Each sink is driven by its own forwarder and only has to
//! turn a batch into bytes for its receiver and say whether a failure is worth retrying.

pub mod envelope;
pub mod eventhubs;
pub mod file;
pub mod filter;
pub mod http;
pub mod redact;
pub mod syslog;
pub mod template;

use std::ops::Range;
use std::sync::Arc;

use crate::config::validate::SinkSettings;
pub use filter::SinkFilter;

/// Collector metadata shared by every record of one spool row.
#[derive(Debug)]
pub struct RowMeta {
    pub tenant: String,
    pub source: String,
    pub name: String,
    pub collected_at_ms: i64,
}

/// A record on its way out: ranges into the spool row's data, so nothing is copied or re-serialised.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub meta: Arc<RowMeta>,
    pub data: Arc<Vec<u8>>,
    pub id: Range<usize>,
    pub raw: Range<usize>,
    pub event_time_ms: i64,
}

impl OutRecord {
    /// The record's JSON exactly as Microsoft sent it.
    pub fn raw(&self) -> &[u8] {
        &self.data[self.raw.clone()]
    }
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.data[self.id.clone()]).unwrap_or("")
    }
}

#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<OutRecord>,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying as is: I/O errors, timeouts, connection loss, 5xx.
    #[error("{0}")]
    Retryable(String),
    /// The receiver asked us to slow down (429, 503 with `Retry-After`); wait at least `after`.
    #[error("throttled: {message}")]
    Throttled { message: String, after: Option<std::time::Duration> },
    /// The receiver refused the whole batch for good (4xx other than 408/429). The forwarder
    /// bisects it to find the poison record(s).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The sink found, before sending anything, that record `index` can never be delivered
    /// (for example larger than the receiver accepts). It goes to the dead-letter table.
    #[error("record {index} cannot be delivered: {reason}")]
    Poison { index: usize, reason: String },
}

#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Delivers the whole batch durably, or fails; a partial write is retried as a whole.
    async fn send(&mut self, batch: &Batch) -> Result<(), SinkError>;
    /// Flushes and releases resources at shutdown.
    async fn close(&mut self) {}
}

#[derive(Debug, thiserror::Error)]
#[error("sink {name}: {message}")]
pub struct SinkBuildError {
    pub name: String,
    pub message: String,
}

/// Settings every sink shares: routing and batching.
#[derive(Debug, Clone)]
pub struct CommonSinkSettings {
    pub name: String,
    pub filter: SinkFilter,
    pub batch_records: usize,
    pub batch_bytes: u64,
    /// How long a partial batch may wait for more records before it is sent anyway.
    pub linger: std::time::Duration,
}

pub struct BuiltSink {
    pub common: CommonSinkSettings,
    pub sink: Box<dyn Sink>,
}

impl BuiltSink {
    pub fn name(&self) -> &str {
        &self.common.name
    }
}

pub fn build(s: &SinkSettings, ctx: &BuildContext) -> Result<BuiltSink, SinkBuildError> {
    let err = |name: &str, e: String| SinkBuildError { name: name.to_string(), message: e };
    let (common, sink): (CommonSinkSettings, Box<dyn Sink>) = match s {
        SinkSettings::File(f) => (
            f.common.clone(),
            Box::new(file::FileSink::new(f.clone()).map_err(|e| err(&f.common.name, e.to_string()))?),
        ),
        SinkSettings::Http(h) => {
            (h.common.clone(), Box::new(http::HttpSink::new(h.clone(), ctx).map_err(|e| err(&h.common.name, e))?))
        }
        SinkSettings::Syslog(y) => (y.common.clone(), Box::new(syslog::SyslogSink::new(y.clone()))),
        SinkSettings::EventHubs(e) => (
            e.common.clone(),
            Box::new(eventhubs::EventHubsSink::new(e.clone(), ctx).map_err(|m| err(&e.common.name, m))?),
        ),
    };
    Ok(BuiltSink { common, sink })
}

/// What a sink may borrow from the daemon: tenant credentials (Azure Monitor and Event Hubs can
/// authenticate as one of the configured apps) and the HTTP client, whose CA bundle also serves
/// managed and workload identity token calls.
#[derive(Clone, Default)]
pub struct BuildContext {
    pub auth: std::collections::HashMap<String, std::sync::Arc<crate::auth::TenantAuth>>,
    pub http: Option<reqwest::Client>,
}
