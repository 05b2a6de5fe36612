//! The record path between sources and sinks: ingest (dedupe + spool + cursor in one
//! transaction), the spool gate that pauses polling when limits are hit, forwarders that move
//! spooled records to each sink, and the maintenance task that prunes.

mod backfill;
mod commit;
pub mod config;
mod delivery;
pub mod forwarder;
pub mod gate;
pub mod ingest;
pub mod maintenance;
pub mod shutdown;
#[cfg(test)]
mod test_support;

pub use ingest::{Pipeline, PipelineError, StreamHandle, StreamKey};
