//! Office 365 Management Activity API source: one stream per (tenant, content type).
//!
//! - `protocol`: the API's rules as pure functions (windows, error codes, parsing).
//! - `client`: HTTP with token, PublisherIdentifier, pacing and retries.
//! - `stream`: the polling loop: subscribe, list windows into the blob ledger, fetch pending blobs.

pub mod client;
pub mod config;
pub mod protocol;
pub mod stream;

pub use client::ManagementClient;
pub use stream::ManagementStream;
