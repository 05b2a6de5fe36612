//! The Graph streams, one row each. Facts from `shared/reference/microsoft-apis.md` §2.

use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Which pacing bucket a stream's calls draw from (limits are per app, per tenant, per API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Identity and access reports (`auditLogs/*`): 5 requests / 10 s per app per tenant.
    Reports,
}

#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: &'static str,
    /// Path below the Graph host, with the API version.
    pub path: &'static str,
    /// The field the window filters on, also the record's event time.
    pub time_field: &'static str,
    /// Comparison operators the endpoint accepts for the window (provisioning: only gt/lt).
    pub ops: (&'static str, &'static str),
    /// Extra `$filter` clause, e.g. the sign-in event type.
    pub extra_filter: Option<&'static str>,
    /// Largest `$top` the endpoint allows.
    pub top: u32,
    pub bucket: Bucket,
    pub default_overlap: Duration,
    /// How far back the API keeps data (P1/P2); backfill is capped by it.
    pub retention: Duration,
    /// What the app needs, named in status when Microsoft refuses.
    pub permission: &'static str,
    pub needs_premium: bool,
    pub default_on: bool,
}

const SIGNIN_PERMISSION: &str =
    "AuditLog.Read.All and Directory.Read.All (application), admin consent";

pub const SPECS: &[StreamSpec] = &[
    StreamSpec {
        name: "signins_interactive",
        path: "/v1.0/auditLogs/signIns",
        time_field: "createdDateTime",
        ops: ("ge", "le"),
        extra_filter: None,
        top: 1000,
        bucket: Bucket::Reports,
        default_overlap: Duration::from_secs(2 * 3600),
        retention: Duration::from_secs(30 * 86_400),
        permission: SIGNIN_PERMISSION,
        needs_premium: true,
        default_on: true,
    },
    StreamSpec {
        name: "signins_noninteractive",
        path: "/beta/auditLogs/signIns",
        time_field: "createdDateTime",
        ops: ("ge", "le"),
        extra_filter: Some("signInEventTypes/any(t: t eq 'nonInteractiveUser')"),
        top: 1000,
        bucket: Bucket::Reports,
        default_overlap: Duration::from_secs(2 * 3600),
        retention: Duration::from_secs(30 * 86_400),
        permission: SIGNIN_PERMISSION,
        needs_premium: true,
        default_on: true,
    },
    StreamSpec {
        name: "signins_service_principal",
        path: "/beta/auditLogs/signIns",
        time_field: "createdDateTime",
        ops: ("ge", "le"),
        extra_filter: Some("signInEventTypes/any(t: t eq 'servicePrincipal')"),
        top: 1000,
        bucket: Bucket::Reports,
        default_overlap: Duration::from_secs(2 * 3600),
        retention: Duration::from_secs(30 * 86_400),
        permission: SIGNIN_PERMISSION,
        needs_premium: true,
        default_on: true,
    },
    StreamSpec {
        name: "signins_managed_identity",
        path: "/beta/auditLogs/signIns",
        time_field: "createdDateTime",
        ops: ("ge", "le"),
        extra_filter: Some("signInEventTypes/any(t: t eq 'managedIdentity')"),
        top: 1000,
        bucket: Bucket::Reports,
        default_overlap: Duration::from_secs(2 * 3600),
        retention: Duration::from_secs(30 * 86_400),
        permission: SIGNIN_PERMISSION,
        needs_premium: true,
        default_on: true,
    },
    StreamSpec {
        name: "directory_audits",
        path: "/v1.0/auditLogs/directoryAudits",
        time_field: "activityDateTime",
        ops: ("ge", "le"),
        extra_filter: None,
        top: 1000,
        bucket: Bucket::Reports,
        default_overlap: HOUR,
        retention: Duration::from_secs(30 * 86_400),
        permission: "AuditLog.Read.All (application), admin consent",
        needs_premium: false,
        default_on: true,
    },
    StreamSpec {
        name: "provisioning",
        path: "/v1.0/auditLogs/provisioning",
        time_field: "activityDateTime",
        // The provisioning filter supports only gt/lt.
        ops: ("gt", "lt"),
        extra_filter: None,
        top: 1000,
        bucket: Bucket::Reports,
        default_overlap: HOUR,
        retention: Duration::from_secs(30 * 86_400),
        permission: "AuditLog.Read.All (application), admin consent",
        needs_premium: false,
        default_on: true,
    },
];

pub fn find(name: &str) -> Option<&'static StreamSpec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Windows longer than this are split, so a 30-day backfill advances its cursor day by day.
pub const CHUNK: Duration = DAY;
