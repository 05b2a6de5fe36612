//! Typed internal events, as in Vector: every notable thing the collector does is a struct
//! whose `emit()` writes its one log line and updates its metrics. A metric name appears only
//! in `telemetry::metrics`, and a message only here, so a change to either is made once.

mod backfill;
mod pipeline;
mod sinks;
mod sources;

pub use backfill::*;
pub use pipeline::*;
pub use sinks::*;
pub use sources::*;

/// The `tenant` and `stream` labels of one stream.
#[derive(Debug, Clone, Copy)]
pub struct Stream<'a> {
    pub tenant: &'a str,
    /// `source/name`, e.g. `management/Audit.Exchange`.
    pub stream: &'a str,
    /// `tenant/source/name`, for log lines.
    pub id: &'a str,
}

impl Stream<'_> {
    fn labels(&self) -> [(&'static str, String); 2] {
        [("tenant", self.tenant.to_string()), ("stream", self.stream.to_string())]
    }
}
