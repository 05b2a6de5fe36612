//! The Graph streams, one row each. Facts from `shared/reference/microsoft-apis.md` §2.

use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Which pacing bucket a stream's calls draw from (limits are per app, per tenant, per API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Identity and access reports (`auditLogs/*`): 5 requests / 10 s per app per tenant.
    Reports,
    /// Other Graph resources (alerts, risk detections): the global Graph limits.
    Graph,
    /// Message trace: 100 requests per 5 minutes per tenant.
    MessageTrace,
    /// Azure Resource Manager: a token bucket of 250 reads, refilled 25 per second.
    Arm,
}

/// Which host a stream's path is below, and so which token audience it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Graph,
    Arm,
}

#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: &'static str,
    pub host: Host,
    /// Path below the host, with the API version; `{subscription}` is replaced per stream.
    pub path: &'static str,
    /// Extra query parameter, e.g. ARM's `api-version`.
    pub query: Option<(&'static str, &'static str)>,
    /// Fields whose values together identify a record (message trace: one row per recipient).
    pub id_fields: &'static [&'static str],
    /// ARM quotes timestamps in `$filter`; Graph does not.
    pub quote_times: bool,
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
    /// Offered in the global service only (not US Gov L4/L5, not China), with the source.
    pub global_only: Option<&'static str>,
}

const SIGNIN_PERMISSION: &str = "AuditLog.Read.All and Directory.Read.All (application), admin consent";

/// The four sign-in streams differ only in name, API version and event-type filter.
const fn signins(name: &'static str, path: &'static str, extra_filter: Option<&'static str>) -> StreamSpec {
    StreamSpec {
        name,
        host: Host::Graph,
        query: None,
        id_fields: &["id"],
        quote_times: false,
        path,
        time_field: "createdDateTime",
        ops: ("ge", "le"),
        extra_filter,
        top: 1000,
        bucket: Bucket::Reports,
        default_overlap: Duration::from_secs(2 * 3600),
        retention: Duration::from_secs(30 * 86_400),
        permission: SIGNIN_PERMISSION,
        needs_premium: true,
        default_on: true,
        global_only: None,
    }
}

pub const SPECS: &[StreamSpec] = &[
    signins("signins_interactive", "/v1.0/auditLogs/signIns", None),
    signins(
        "signins_noninteractive",
        "/beta/auditLogs/signIns",
        Some("signInEventTypes/any(t: t eq 'nonInteractiveUser')"),
    ),
    signins(
        "signins_service_principal",
        "/beta/auditLogs/signIns",
        Some("signInEventTypes/any(t: t eq 'servicePrincipal')"),
    ),
    signins(
        "signins_managed_identity",
        "/beta/auditLogs/signIns",
        Some("signInEventTypes/any(t: t eq 'managedIdentity')"),
    ),
    StreamSpec {
        name: "directory_audits",
        host: Host::Graph,
        query: None,
        id_fields: &["id"],
        quote_times: false,
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
        global_only: None,
    },
    StreamSpec {
        name: "provisioning",
        host: Host::Graph,
        query: None,
        id_fields: &["id"],
        quote_times: false,
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
        global_only: None,
    },
    StreamSpec {
        name: "risk_detections",
        host: Host::Graph,
        query: None,
        id_fields: &["id"],
        quote_times: false,
        path: "/v1.0/identityProtection/riskDetections",
        // Detections change state; polling on the update time finds every new version.
        time_field: "lastUpdatedDateTime",
        ops: ("ge", "le"),
        extra_filter: None,
        top: 500,
        bucket: Bucket::Graph,
        default_overlap: HOUR,
        retention: Duration::from_secs(90 * 86_400),
        permission: "IdentityRiskEvent.Read.All (application), admin consent",
        needs_premium: true,
        default_on: true,
        global_only: None,
    },
    StreamSpec {
        name: "security_alerts",
        host: Host::Graph,
        query: None,
        id_fields: &["id"],
        quote_times: false,
        path: "/v1.0/security/alerts_v2",
        time_field: "lastUpdateDateTime",
        ops: ("ge", "le"),
        extra_filter: None,
        top: 1000,
        bucket: Bucket::Graph,
        default_overlap: HOUR,
        retention: Duration::from_secs(90 * 86_400),
        permission: "SecurityAlert.Read.All (application), admin consent",
        needs_premium: false,
        default_on: true,
        global_only: None,
    },
    StreamSpec {
        name: "message_trace",
        host: Host::Graph,
        query: None,
        // One row per recipient of a message: the trace id alone is not unique.
        id_fields: &["id", "recipientAddress"],
        quote_times: false,
        path: "/v1.0/admin/exchange/tracing/messageTraces",
        time_field: "receivedDateTime",
        ops: ("ge", "le"),
        extra_filter: None,
        top: 5000,
        bucket: Bucket::MessageTrace,
        default_overlap: HOUR,
        retention: Duration::from_secs(90 * 86_400),
        permission: "ExchangeMessageTrace.Read.All (application), admin consent, and the message-trace service principal provisioned",
        needs_premium: false,
        default_on: true,
        // shared/reference/microsoft-apis.md §3.2 and §9: "National clouds: global only" [DOC].
        global_only: Some(
            "Graph message trace is offered in the global service only (reference §3.2, Microsoft's messageTraces documentation)",
        ),
    },
    StreamSpec {
        name: "azure_activity",
        host: Host::Arm,
        query: Some(("api-version", "2015-04-01")),
        id_fields: &["eventDataId"],
        quote_times: true,
        path: "/subscriptions/{subscription}/providers/Microsoft.Insights/eventtypes/management/values",
        time_field: "eventTimestamp",
        ops: ("ge", "le"),
        extra_filter: None,
        top: 0,
        bucket: Bucket::Arm,
        // Events become queryable minutes after their timestamp (submissionTimestamp).
        default_overlap: Duration::from_secs(2 * 3600),
        retention: Duration::from_secs(90 * 86_400),
        permission: "the Reader role on the subscription",
        needs_premium: false,
        default_on: false,
        global_only: None,
    },
];

impl StreamSpec {
    /// Whether a record keeps its `time_field` when Microsoft updates it (`lastUpdated...`
    /// fields move): only then is that time part of the record's dedupe identity.
    pub fn time_is_stable(&self) -> bool {
        !self.time_field.starts_with("lastUpdate")
    }

    /// The retention the headroom is counted against. Without P1/P2 Entra keeps audit logs 7
    /// days, so the audit streams that do not need P1/P2 assume the shorter one: a P1/P2 tenant
    /// only has more headroom than shown, never less.
    pub fn guaranteed_retention(&self) -> Duration {
        if !self.needs_premium && self.bucket == Bucket::Reports { 7 * DAY } else { self.retention }
    }
}

pub fn find(name: &str) -> Option<&'static StreamSpec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Windows longer than this are split, so a 30-day backfill advances its cursor day by day.
pub const CHUNK: Duration = DAY;
