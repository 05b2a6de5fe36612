//! Sinks: where spooled records go. Each sink is driven by its own forwarder and only has to
//! turn a batch into bytes for its receiver, mark what the receiver confirmed, and say whether
//! a failure is worth retrying. Retrying, bisecting and committing belong to `pipeline`.
//!
//! A sink knows no source: it sees records as bytes with their tenant, stream and event time.
//! Each kind's folder holds `config.rs` (raw table, pure `validate`, environment `check`) and
//! the sink itself (`new` is the build step, run once at start).

pub mod common;
pub mod config;
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

pub use common::CommonSinkSettings;
use config::{SinkKind, SinkSettings};
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
    /// The source's envelope fields, a JSON object in `data` (backfilled records).
    pub envelope: Option<Range<usize>>,
}

impl OutRecord {
    pub fn envelope(&self) -> Option<&[u8]> {
        self.envelope.clone().map(|r| &self.data[r])
    }

    /// The record's JSON exactly as Microsoft sent it.
    pub fn raw(&self) -> &[u8] {
        &self.data[self.raw.clone()]
    }
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.data[self.id.clone()]).unwrap_or("")
    }
}

#[derive(Debug, Default, Clone)]
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

/// Which records of the batch being sent the receiver has already confirmed.
///
/// A sink that delivers one batch in several requests or messages marks each part as soon as
/// the receiver confirmed it; when a later part fails, delivery retries only the records not
/// marked. So retry progress lives in one place (`pipeline::delivery`), not in every sink.
#[derive(Debug, Default)]
pub struct Accepted {
    indices: Vec<usize>,
}

impl Accepted {
    /// Record `index` of the batch was confirmed by the receiver.
    pub fn mark(&mut self, index: usize) {
        self.indices.push(index);
    }

    pub fn mark_all(&mut self, indices: impl IntoIterator<Item = usize>) {
        self.indices.extend(indices);
    }

    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Delivers the whole batch durably, or fails. Parts confirmed before a failure are marked
    /// in `accepted`; everything else is retried.
    async fn send(&mut self, batch: &Batch, accepted: &mut Accepted) -> Result<(), SinkError>;
    /// Flushes and releases resources at shutdown.
    async fn close(&mut self) {}
}

/// Why a sink could not be built at start. Configuration errors are found here or by
/// `validate`, never at the first send.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Tls(#[from] crate::common::tls::TlsError),
    #[error("{what}: {source}")]
    Secret {
        what: &'static str,
        #[source]
        source: crate::common::SecretError,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("tenant {0} is not configured, so its credential cannot sign this sink's calls")]
    UnknownTenant(String),
    #[error("{0}")]
    Client(String),
}

#[derive(Debug, thiserror::Error)]
#[error("sink {name}: {source}")]
pub struct SinkBuildError {
    pub name: String,
    #[source]
    pub source: BuildError,
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

/// The build step: reads secrets and certificates and opens what the sink needs.
pub fn build(s: &SinkSettings, ctx: &BuildContext) -> Result<BuiltSink, SinkBuildError> {
    let name = s.common.name.as_str();
    let built: Result<Box<dyn Sink>, BuildError> = match &s.kind {
        SinkKind::File(f) => {
            file::FileSink::new(f.clone()).map(|x| Box::new(x) as Box<dyn Sink>).map_err(BuildError::Io)
        }
        SinkKind::Http(h) => http::HttpSink::new(name, (**h).clone(), ctx).map(|x| Box::new(x) as Box<dyn Sink>),
        SinkKind::Syslog(y) => syslog::SyslogSink::new(name, y.clone()).map(|x| Box::new(x) as Box<dyn Sink>),
        SinkKind::EventHubs(e) => {
            eventhubs::EventHubsSink::new(name, e.clone(), ctx).map(|x| Box::new(x) as Box<dyn Sink>)
        }
    };
    let sink = built.map_err(|source| SinkBuildError { name: name.to_string(), source })?;
    Ok(BuiltSink { common: s.common.clone(), sink })
}

/// What a sink may borrow from the daemon: tenant credentials (Azure Monitor and Event Hubs can
/// authenticate as one of the configured apps) and the HTTP client, whose CA bundle also serves
/// managed and workload identity token calls.
#[derive(Clone, Default)]
pub struct BuildContext {
    pub auth: std::collections::HashMap<String, std::sync::Arc<crate::auth::TenantAuth>>,
    pub http: Option<crate::http::Clients>,
}
