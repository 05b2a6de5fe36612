//! Scenario knobs of the simulated tenant. Every behaviour in `shared/reference` that can lose or
//! double records in a real collector has a knob here, so tests can switch it on.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub seed: u64,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// The federated token (workload identity) the app trusts in place of a secret.
    pub federated_token: String,
    /// A certificate (PEM) registered on the app: assertions signed with its key are accepted.
    pub client_certificate_pem: Option<String>,
    /// Content types the tenant produces (all five by default).
    pub content_types: Vec<String>,
    /// Days of content available when the simulator starts.
    pub history_days: f64,
    /// Records across all content types in the history.
    pub history_records: u64,
    pub records_per_blob: u32,
    /// When above 0, history blobs hold between this many and `records_per_blob` records, as a
    /// real tenant's trickle of small blobs does.
    pub records_per_blob_min: u32,
    /// New records per second across all content types after start (0 = none).
    pub live_records_per_sec: f64,
    /// Listing page size before a `NextPageUri` is sent.
    pub page_size: usize,
    /// Fraction of blobs that appear in listings only some time after their `contentCreated`.
    pub late_listing_fraction: f64,
    #[serde(with = "humantime_serde")]
    pub late_listing_max: Duration,
    /// Fraction of records whose event time is days older than their blob.
    pub old_events_fraction: f64,
    /// Fraction of records re-delivered in a later blob with the same `Id` and another key order.
    pub duplicate_fraction: f64,
    /// Every `throttle_every` API requests, the next `throttle_burst` get 403 AF429.
    pub throttle_every: u64,
    pub throttle_burst: u64,
    /// Every `error_every` API requests, the next `error_burst` get a 5xx.
    pub error_every: u64,
    pub error_burst: u64,
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// When false, no subscription exists until the collector starts one (AF20022).
    pub subscriptions_enabled: bool,
    /// After a subscription starts, listings stay empty this long (Microsoft: up to 12 h).
    #[serde(with = "humantime_serde")]
    pub warm_up: Duration,
    /// Fraction of blobs that answer AF20051 (expired) when fetched.
    pub expired_fraction: f64,
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// The simulator's clock runs this many seconds ahead (negative: behind) of the host's.
    pub clock_skew_secs: i64,
    /// Approximate padding so records weigh 1 to 2 KB like real ones.
    pub pad_records: bool,
    /// Content types whose listing answers 403 AF10001 (permission missing): a fatal code.
    pub forbidden_content_types: Vec<String>,
    /// Graph activity-log records (all kinds together) available at start, over `graph_history_hours`.
    pub graph_history_records: u64,
    pub graph_history_hours: f64,
    pub graph_live_records_per_sec: f64,
    /// Fraction of Graph records that appear only some time after their event time.
    pub graph_late_fraction: f64,
    #[serde(with = "humantime_serde")]
    pub graph_late_max: Duration,
    /// Fraction of Graph records that change after first appearing (risk added, MFA merged).
    pub graph_update_fraction: f64,
    #[serde(with = "humantime_serde")]
    pub graph_update_delay: Duration,
    /// Without Entra ID P1/P2 sign-ins answer 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant.
    pub premium: bool,
    /// Enforce 5 requests per 10 s on `auditLogs/*` with 429 + Retry-After.
    pub graph_rate_limit: bool,
    /// A hostile or broken upstream (`hostile.rs`); all off by default.
    pub attacks: super::hostile::Attacks,
    /// The audit log query API (`audit_log.rs`).
    pub audit_log: super::audit_log::AuditLogScenario,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seed: 42,
            tenant_id: "7b3f5c1e-9a2d-4e8f-b6c4-2d1e0f9a8b7c".into(),
            client_id: "5a1c7e3b-2f4d-4b6a-9c8e-1d0f2e3a4b5c".into(),
            client_secret: "sim-secret-do-not-use".into(),
            federated_token: "sim-federated-service-account-token".into(),
            client_certificate_pem: None,
            content_types: crate::sources::management::config::CONTENT_TYPES.iter().map(|s| s.to_string()).collect(),
            history_days: 2.0,
            history_records: 20_000,
            records_per_blob: 100,
            records_per_blob_min: 0,
            live_records_per_sec: 0.0,
            page_size: 100,
            late_listing_fraction: 0.0,
            late_listing_max: Duration::from_secs(0),
            old_events_fraction: 0.0,
            duplicate_fraction: 0.0,
            throttle_every: 0,
            throttle_burst: 0,
            error_every: 0,
            error_burst: 0,
            latency: Duration::ZERO,
            subscriptions_enabled: true,
            warm_up: Duration::ZERO,
            expired_fraction: 0.0,
            token_lifetime: Duration::from_secs(3599),
            clock_skew_secs: 0,
            pad_records: true,
            forbidden_content_types: Vec::new(),
            graph_history_records: 0,
            graph_history_hours: 24.0,
            graph_live_records_per_sec: 0.0,
            graph_late_fraction: 0.0,
            graph_late_max: Duration::ZERO,
            graph_update_fraction: 0.0,
            graph_update_delay: Duration::from_secs(2),
            premium: true,
            graph_rate_limit: true,
            attacks: Default::default(),
            audit_log: Default::default(),
        }
    }
}

impl Scenario {
    /// Every quirk on, at rates a short test can afford.
    pub fn hostile() -> Scenario {
        Scenario {
            page_size: 7,
            late_listing_fraction: 0.1,
            late_listing_max: Duration::from_secs(3),
            old_events_fraction: 0.1,
            duplicate_fraction: 0.05,
            throttle_every: 37,
            throttle_burst: 3,
            error_every: 53,
            error_burst: 2,
            latency: Duration::from_millis(2),
            subscriptions_enabled: false,
            expired_fraction: 0.03,
            clock_skew_secs: 90,
            ..Scenario::default()
        }
    }
}
