//! Sources: one folder per Microsoft API. A source reads its position through its
//! `StreamHandle`, polls the API, and hands pages with their checkpoints to ingest. It never
//! writes to the store itself.

pub mod caller;
pub mod clock;
pub mod error;
pub mod graph;
pub mod management;
pub mod record;
