//! The simulated Graph activity logs: sign-ins (interactive, non-interactive, service principal,
//! managed identity), directory audits and provisioning, newest first, `@odata.nextLink` paging,
//! late records, records that change, the 5-per-10-s limit, the non-premium 403 and the
//! provisioning filter that accepts only gt/lt.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::records::{guid, h, unit};
use super::scenario::Scenario;

pub const KINDS: [&str; 10] = [
    "interactiveUser",
    "nonInteractiveUser",
    "servicePrincipal",
    "managedIdentity",
    "directoryAudit",
    "provisioning",
    "riskDetection",
    "alert",
    "messageTrace",
    "activityLog",
];

/// Kinds whose API filters on the last-update time: an update moves the record forward in time.
pub fn filters_on_update(kind: usize) -> bool {
    matches!(KINDS[kind], "riskDetection" | "alert")
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: usize,
    pub n: u64,
    pub id: String,
    /// Message trace: one row per recipient, sharing the trace id.
    pub recipient: Option<String>,
    pub at: DateTime<Utc>,
    pub visible_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GraphStats {
    pub requests: u64,
    pub throttled: u64,
    /// Most `auditLogs` requests seen in any 10-second window.
    pub max_requests_per_10s: usize,
}

pub struct GraphTenant {
    seed: u64,
    events: Mutex<Vec<Event>>,
    window: Mutex<VecDeque<Instant>>,
    trace_window: Mutex<VecDeque<Instant>>,
    stats: Mutex<GraphStats>,
    debt: Mutex<f64>,
}

impl GraphTenant {
    pub fn new(s: &Scenario, now: DateTime<Utc>) -> GraphTenant {
        let g = GraphTenant {
            seed: s.seed,
            events: Mutex::new(Vec::new()),
            window: Mutex::new(VecDeque::new()),
            trace_window: Mutex::new(VecDeque::new()),
            stats: Mutex::new(GraphStats::default()),
            debt: Mutex::new(0.0),
        };
        let span_ms = (s.graph_history_hours * 3_600_000.0) as i64;
        let n = s.graph_history_records;
        for i in 0..n {
            let at = now - chrono::Duration::milliseconds(span_ms)
                + chrono::Duration::milliseconds(span_ms * i as i64 / n.max(1) as i64);
            g.add(s, at);
        }
        g
    }

    fn add(&self, s: &Scenario, at: DateTime<Utc>) {
        let mut ev = self.events.lock().expect("events");
        let n = ev.len() as u64;
        let r = h(&[self.seed, 500, n]);
        // Message traces are added in pairs (see below), so the kind of an odd record follows its pair.
        let kind = if n % 2 == 1 && ev.last().is_some_and(|p| KINDS[p.kind] == "messageTrace") {
            ev.last().expect("checked").kind
        } else {
            (r % KINDS.len() as u64) as usize
        };
        let late = unit(h(&[r, 1])) < s.graph_late_fraction;
        let visible_at = at
            + if late {
                chrono::Duration::from_std(s.graph_late_max.mul_f64(unit(h(&[r, 2])))).unwrap_or_default()
            } else {
                chrono::Duration::zero()
            };
        let updated_at = (unit(h(&[r, 3])) < s.graph_update_fraction)
            .then(|| visible_at + chrono::Duration::from_std(s.graph_update_delay).unwrap_or_default());
        // Activity-log events never change; every other kind may.
        let updated_at = if KINDS[kind] == "activityLog" { None } else { updated_at };
        // Message traces come in pairs: the same message to two recipients.
        let (id, recipient) = if KINDS[kind] == "messageTrace" {
            let pair = h(&[self.seed, 510, n / 2]);
            let who = ["cfo", "payroll", "helpdesk", "legal"][(n % 2 + (pair % 2) * 2) as usize];
            (guid(pair, 1), Some(format!("{who}@contoso.com")))
        } else {
            (guid(h(&[r, 4]), h(&[r, 5])), None)
        };
        ev.push(Event { kind, n, id, recipient, at, visible_at, updated_at });
    }

    pub fn tick(&self, s: &Scenario, elapsed: Duration, now: DateTime<Utc>) {
        let mut d = self.debt.lock().expect("debt");
        *d += s.graph_live_records_per_sec * elapsed.as_secs_f64();
        while *d >= 1.0 {
            *d -= 1.0;
            self.add(s, now);
        }
    }

    /// Records a rate-limited call (`trace`: the message-trace bucket, else `auditLogs`); returns
    /// the Retry-After seconds when over `n` calls in `secs` seconds.
    pub fn admit(&self, trace: bool, n: usize, secs: u64, enforce: bool) -> Option<u64> {
        let now = Instant::now();
        let span = Duration::from_secs(secs);
        let mut w = if trace { self.trace_window.lock() } else { self.window.lock() }.expect("window");
        while w.front().is_some_and(|t| now.duration_since(*t) >= span) {
            w.pop_front();
        }
        let mut st = self.stats.lock().expect("stats");
        st.requests += 1;
        if enforce && w.len() >= n {
            st.throttled += 1;
            let wait = span.saturating_sub(now.duration_since(*w.front().expect("non-empty")));
            return Some(wait.as_secs().max(1));
        }
        w.push_back(now);
        if !trace {
            st.max_requests_per_10s = st.max_requests_per_10s.max(w.len());
        }
        None
    }

    pub fn stats(&self) -> GraphStats {
        self.stats.lock().expect("stats").clone()
    }

    /// Visible records of `kind` with `lo <(=) at <(=) hi`, newest first.
    pub fn query(
        &self,
        kind: usize,
        lo: (DateTime<Utc>, bool),
        hi: (DateTime<Utc>, bool),
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        let ev = self.events.lock().expect("events");
        let mut v: Vec<Event> = ev
            .iter()
            .filter(|e| e.kind == kind && e.visible_at <= now)
            .filter(|e| if lo.1 { e.at >= lo.0 } else { e.at > lo.0 })
            .filter(|e| if hi.1 { e.at <= hi.0 } else { e.at < hi.0 })
            .cloned()
            .collect();
        v.sort_by(|a, b| b.at.cmp(&a.at).then(b.n.cmp(&a.n)));
        v
    }

    /// Every record with the versions a complete collector must have delivered by `now`.
    pub fn truth(&self, now: DateTime<Utc>) -> HashMap<String, (Event, Vec<String>)> {
        let ev = self.events.lock().expect("events");
        ev.iter()
            .map(|e| {
                let mut versions = vec![render(self.seed, e, 1, false)];
                if e.version(now) == 2 {
                    versions.push(render(self.seed, e, 2, false));
                }
                (e.key(), (e.clone(), versions))
            })
            .collect()
    }

    pub fn last_visible_at(&self) -> Option<DateTime<Utc>> {
        self.events.lock().expect("events").iter().map(|e| e.updated_at.unwrap_or(e.visible_at)).max()
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl Event {
    /// The identity a collector dedupes on: the id, or id and recipient for message traces.
    pub fn key(&self) -> String {
        match &self.recipient {
            Some(r) => format!("{}|{r}", self.id),
            None => self.id.clone(),
        }
    }

    /// The time the API filters on at `now`.
    pub fn time(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.updated_at {
            Some(u) if filters_on_update(self.kind) && u <= now => u,
            _ => self.at,
        }
    }

    pub fn version(&self, now: DateTime<Utc>) -> u8 {
        if self.updated_at.is_some_and(|u| u <= now) { 2 } else { 1 }
    }
}

/// A record's JSON at `version` (2 = after Microsoft updated it), keys reversed when `reorder`.
pub fn render(seed: u64, e: &Event, version: u8, reorder: bool) -> String {
    let r = h(&[seed, 600, e.n]);
    let q = |s: &str| serde_json::to_string(s).expect("string");
    let ts = q(&e.at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    let ip = ["203.0.113.77", "198.51.100.23", "185.220.101.9", "2001:db8::4f1"][(r % 4) as usize];
    let user = ["adele.vance", "megan.bowen", "diego.siciliani", "isaiah.langer"][((r >> 4) % 4) as usize];
    let mut f: Vec<(&str, String)> = if KINDS[e.kind] == "activityLog" {
        vec![("id", q(&format!("/subscriptions/{}/events/{}/ticks/{}", guid(seed, 77), e.id, e.at.timestamp_micros())))]
    } else {
        vec![("id", q(&e.id))]
    };
    match KINDS[e.kind] {
        "directoryAudit" => {
            let op = [
                "Add member to role",
                "Update application",
                "Add service principal credentials",
                "Reset user password",
            ][(r % 4) as usize];
            f.push(("category", q("RoleManagement")));
            f.push(("correlationId", q(&guid(r, 1))));
            f.push(("result", q(if version == 2 { "failure" } else { "success" })));
            f.push(("resultReason", q("")));
            f.push(("activityDisplayName", q(op)));
            f.push(("activityDateTime", ts));
            f.push(("loggedByService", q("Core Directory")));
            f.push(("operationType", q("Assign")));
            f.push(("initiatedBy", format!(r#"{{"user":{{"id":"{}","userPrincipalName":"{user}@contoso.onmicrosoft.com","ipAddress":"{ip}"}},"app":null}}"#, guid(r, 2))));
            f.push((
                "targetResources",
                format!(
                    r#"[{{"id":"{}","displayName":"Global Administrator","type":"Role","modifiedProperties":[]}}]"#,
                    guid(r, 3)
                ),
            ));
            f.push(("additionalDetails", "[]".into()));
        }
        "riskDetection" => {
            let updated = e.updated_at.filter(|_| version == 2).unwrap_or(e.at);
            f.push(("requestId", q(&guid(r, 20))));
            f.push(("correlationId", q(&guid(r, 21))));
            f.push((
                "riskEventType",
                q(["unfamiliarFeatures", "anonymizedIPAddress", "impossibleTravel"][(r % 3) as usize]),
            ));
            f.push(("riskState", q(if version == 2 { "remediated" } else { "atRisk" })));
            f.push(("riskLevel", q("medium")));
            f.push(("riskDetail", q(if version == 2 { "userPassedMFADrivenByRiskBasedPolicy" } else { "none" })));
            f.push(("source", q("IdentityProtection")));
            f.push(("detectionTimingType", q("realtime")));
            f.push(("activity", q("signin")));
            f.push(("ipAddress", q(ip)));
            f.push(("activityDateTime", ts.clone()));
            f.push(("detectedDateTime", ts));
            f.push(("lastUpdatedDateTime", q(&updated.format("%Y-%m-%dT%H:%M:%SZ").to_string())));
            f.push(("userId", q(&guid(r, 7))));
            f.push(("userPrincipalName", q(&format!("{user}@contoso.onmicrosoft.com"))));
        }
        "alert" => {
            let updated = e.updated_at.filter(|_| version == 2).unwrap_or(e.at);
            f.push(("providerAlertId", q(&guid(r, 22))));
            f.push(("incidentId", q(&format!("{}", 1000 + r % 9000))));
            f.push(("status", q(if version == 2 { "inProgress" } else { "new" })));
            f.push(("severity", q(["low", "medium", "high"][(r % 3) as usize])));
            f.push(("classification", "null".into()));
            f.push(("serviceSource", q("microsoftDefenderForOffice365")));
            f.push(("detectionSource", q("microsoftDefenderForOffice365")));
            f.push(("title", q("Suspicious email forwarding activity")));
            f.push(("category", q("Exfiltration")));
            f.push(("createdDateTime", ts));
            f.push(("lastUpdateDateTime", q(&updated.format("%Y-%m-%dT%H:%M:%SZ").to_string())));
            f.push((
                "evidence",
                format!(r##"[{{"@odata.type":"#microsoft.graph.security.mailboxEvidence","primaryAddress":"{user}@contoso.onmicrosoft.com","verdict":"suspicious"}}]"##),
            ));
        }
        "messageTrace" => {
            f.push((
                "senderAddress",
                q(&format!("billing@{}", ["fabrikam.com", "contoso-invoices.net"][(r % 2) as usize])),
            ));
            f.push(("recipientAddress", q(e.recipient.as_deref().unwrap_or(""))));
            f.push(("messageId", q(&format!("<{}@mail.example>", &guid(h(&[seed, 510, e.n / 2]), 2)[..18]))));
            f.push(("receivedDateTime", ts));
            f.push(("subject", q(["Invoice overdue", "Payroll update", "Shared document"][(r % 3) as usize])));
            f.push(("size", format!("{}", 2_000 + r % 80_000)));
            f.push(("fromIP", q(ip)));
            f.push(("toIP", "null".into()));
            let final_status = ["delivered", "filteredAsSpam", "quarantined"][(r % 3) as usize];
            f.push(("status", q(if version == 1 && e.updated_at.is_some() { "pending" } else { final_status })));
        }
        "activityLog" => {
            let sub = guid(seed, 77);
            let (op, rp, body) = if r.is_multiple_of(2) {
                (
                    "Microsoft.Compute/virtualMachines/write",
                    "Microsoft.Compute",
                    r#"{\"properties\":{\"hardwareProfile\":{\"vmSize\":\"Standard_NC24ads_A100_v4\"}}}"#,
                )
            } else {
                ("Microsoft.Storage/storageAccounts/listKeys/action", "Microsoft.Storage", "")
            };
            let corr = guid(h(&[seed, 520, e.n / 2]), 3);
            f.push(("eventDataId", q(&e.id)));
            f.push(("correlationId", q(&corr)));
            f.push(("operationName", format!(r#"{{"value":"{op}","localizedValue":"{op}"}}"#)));
            f.push(("category", r#"{"value":"Administrative","localizedValue":"Administrative"}"#.into()));
            f.push(("level", q("Informational")));
            f.push(("resourceGroupName", q("rg-prod")));
            f.push(("resourceProviderName", format!(r#"{{"value":"{rp}","localizedValue":"{rp}"}}"#)));
            f.push((
                "resourceId",
                q(&format!("/subscriptions/{sub}/resourceGroups/rg-prod/providers/{rp}/x{}", r % 50)),
            ));
            f.push(("status", r#"{"value":"Succeeded","localizedValue":"Succeeded"}"#.into()));
            f.push(("eventTimestamp", ts.clone()));
            f.push(("submissionTimestamp", q(&e.visible_at.format("%Y-%m-%dT%H:%M:%SZ").to_string())));
            f.push(("subscriptionId", q(&sub)));
            f.push(("caller", q(&format!("{user}@contoso.onmicrosoft.com"))));
            f.push((
                "httpRequest",
                format!(r#"{{"clientRequestId":"{}","clientIpAddress":"{ip}","method":"PUT"}}"#, guid(r, 23)),
            ));
            f.push(("properties", format!(r#"{{"statusCode":"OK","responseBody":"{body}"}}"#)));
        }
        "provisioning" => {
            f.push(("activityDateTime", ts));
            f.push(("tenantId", q(&guid(seed, 9))));
            f.push(("jobId", q("aad2aadprov.0b6f4a1e")));
            f.push(("cycleId", q(&guid(r, 4))));
            f.push(("changeId", q(&guid(r, 5))));
            f.push(("provisioningAction", q("create")));
            f.push((
                "provisioningStatusInfo",
                format!(
                    r#"{{"status":"{}","errorInformation":null}}"#,
                    if version == 2 { "failure" } else { "success" }
                ),
            ));
            f.push(("sourceSystem", r#"{"id":"1","displayName":"Azure Active Directory"}"#.into()));
            f.push(("targetSystem", r#"{"id":"2","displayName":"ServiceNow"}"#.into()));
            f.push((
                "sourceIdentity",
                format!(r#"{{"id":"{}","displayName":"{user}","identityType":"User"}}"#, guid(r, 6)),
            ));
        }
        kind => {
            let (app, client) = match kind {
                "servicePrincipal" => ("Backup Automation", "Client credentials"),
                "managedIdentity" => ("vm-prod-01", "Managed identity"),
                "nonInteractiveUser" => ("Microsoft Office", "Mobile Apps and Desktop clients"),
                _ => ("Office 365 Exchange Online", "Browser"),
            };
            let failed = r.is_multiple_of(7);
            f.push(("createdDateTime", ts));
            f.push(("userDisplayName", q(user)));
            f.push(("userPrincipalName", q(&format!("{user}@contoso.onmicrosoft.com"))));
            f.push(("userId", q(&guid(r, 7))));
            f.push(("appId", q(&guid(r, 8))));
            f.push(("appDisplayName", q(app)));
            f.push(("ipAddress", q(ip)));
            f.push(("clientAppUsed", q(client)));
            f.push(("correlationId", q(&guid(r, 10))));
            f.push(("conditionalAccessStatus", q(if failed { "failure" } else { "success" })));
            f.push(("isInteractive", (kind == "interactiveUser").to_string()));
            f.push(("riskLevelDuringSignIn", q(if version == 2 { "high" } else { "none" })));
            f.push(("riskState", q(if version == 2 { "atRisk" } else { "none" })));
            f.push(("riskEventTypes_v2", if version == 2 { r#"["unfamiliarFeatures"]"#.into() } else { "[]".into() }));
            f.push(("resourceDisplayName", q("Microsoft Graph")));
            f.push((
                "status",
                format!(
                    r#"{{"errorCode":{},"failureReason":{},"additionalDetails":null}}"#,
                    if failed { 50126 } else { 0 },
                    if failed { q("Invalid username or password.") } else { "null".into() }
                ),
            ));
            f.push(("deviceDetail", r#"{"deviceId":"","displayName":"","operatingSystem":"Windows 10","browser":"Edge 131.0.0","isCompliant":false,"isManaged":false,"trustType":""}"#.into()));
            f.push((
                "location",
                format!(r#"{{"city":"{}","state":"","countryOrRegion":"{}","geoCoordinates":{{"latitude":52.37,"longitude":4.89}}}}"#, ["Amsterdam", "Lagos", "Sao Paulo", "Seattle"][(r % 4) as usize], ["NL", "NG", "BR", "US"][(r % 4) as usize]),
            ));
            f.push((
                "authenticationDetails",
                if version == 2 || r.is_multiple_of(3) {
                    r#"[{"authenticationMethod":"Password","succeeded":true},{"authenticationMethod":"Mobile app notification","succeeded":true}]"#.into()
                } else {
                    r#"[{"authenticationMethod":"Password","succeeded":true}]"#.into()
                },
            ));
            f.push(("signInEventTypes", format!("[{}]", q(kind))));
            if kind == "servicePrincipal" {
                f.push(("servicePrincipalId", q(&guid(r, 11))));
                f.push(("servicePrincipalName", q(app)));
            }
            if kind == "managedIdentity" {
                f.push(("managedIdentityType", q("systemAssigned")));
            }
        }
    }
    if reorder {
        f.reverse();
    }
    let body: Vec<String> = f.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}
