//! Sources: one folder per Microsoft API. A source reads its position through its
//! `StreamHandle`, polls the API, and hands pages with their checkpoints to ingest. It never
//! writes to the store itself.
//!
//! Shared by every source: `driver` (the run loop and the stream's state), `window` (the one
//! window planner), `caller` (one HTTP call with token, pacing and retries), `clock`, `error`.
//! A new source writes its protocol and a `driver::Source::cycle`.

pub mod audit_query;
pub mod boundary;
pub mod caller;
pub mod calls;
pub mod clock;
pub mod driver;
pub mod error;
pub mod graph;
mod json_scan;
pub mod management;
pub mod record;
mod record_head;
pub mod window;
