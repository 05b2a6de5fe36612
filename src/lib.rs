//! auditkeeper: pulls every audit record a Microsoft tenant produces, before Microsoft ages it
//! out, and forwards it to a SIEM without losing or doubling records.
//!
//! A record flows: `sources` (poll an API from a stored cursor) → `pipeline::ingest` (dedupe +
//! spool + cursor in one SQLite transaction, see `store`) → `pipeline::forwarder` (one per sink,
//! commits its offset only after the sink confirmed) → `sinks`.

pub mod admin;
pub mod auth;
pub mod backfill_cmd;
pub mod cli;
pub mod common;
pub mod config;
pub mod daemon;
#[cfg(feature = "simulator")]
pub mod demo;
pub mod health;
pub mod http;
pub mod pipeline;
pub mod service;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod store;
pub mod telemetry;
