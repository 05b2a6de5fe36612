//! Backfill from the unified audit log (Microsoft Graph audit log query API,
//! `/security/auditLog/queries`): jobs registered by `auditkeeper backfill` or by
//! `backfill_days`, run as one stream per tenant inside the daemon beside the live feed.
//! Records are the `auditData` objects, the same records (same `Id`) the Management Activity
//! API delivers, so they share its dedupe keys and the overlap is forwarded once.

pub mod client;
pub mod config;
pub mod protocol;
pub mod stream;

pub use client::AuditQueryClient;
pub use stream::AuditQueryStream;

/// The stream's name under its tenant: `TENANT/audit_query/backfill`.
pub const SOURCE: &str = "audit_query";
pub const NAME: &str = "backfill";
