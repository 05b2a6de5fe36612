//! Sinks: where spooled records go. Each sink is driven by its own forwarder and only has to
//! turn a batch into bytes for its receiver and say whether a failure is worth retrying.

pub mod file;

use std::ops::Range;
use std::sync::Arc;

use crate::config::validate::SinkSettings;

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
    /// Worth retrying as is: I/O errors, timeouts, receiver overload.
    #[error("{0}")]
    Retryable(String),
    /// The receiver refused the batch for good; the forwarder keeps retrying it loudly (the
    /// dead-letter table of the sinks issue will take these).
    #[error("rejected: {0}")]
    Rejected(String),
}

#[async_trait::async_trait]
pub trait Sink: Send {
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

pub struct BuiltSink {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub batch_records: usize,
    pub batch_bytes: u64,
}

pub fn build(s: &SinkSettings) -> Result<BuiltSink, SinkBuildError> {
    match s {
        SinkSettings::File(f) => Ok(BuiltSink {
            name: f.name.clone(),
            sink: Box::new(
                file::FileSink::new(f.clone())
                    .map_err(|e| SinkBuildError { name: f.name.clone(), message: e.to_string() })?,
            ),
            batch_records: f.batch_records,
            batch_bytes: f.batch_bytes,
        }),
    }
}
