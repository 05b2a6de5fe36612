//! Microsoft Graph activity-log sources (Entra sign-ins of all four kinds, directory audits,
//! provisioning): windowed queries that re-read an overlap behind the cursor, because sign-ins
//! arrive late and records change after first delivery.
//!
//! - `spec`: the table of streams (endpoint, time field, filter operators, limits, permission).
//! - `protocol`: pure rules: windows, URLs, page parsing, error classification, content keys.
//! - `client`: calls through the shared `Caller`, paced per tenant and API.
//! - `stream`: the polling loop.

pub mod client;
pub mod config;
pub mod protocol;
pub mod spec;
pub mod stream;

pub use client::GraphClient;
pub use spec::{SPECS, StreamSpec};
pub use stream::GraphStream;
