//! The simulated unified audit log behind the Graph audit log query API (reference §5, §9).
//!
//! It holds every record the tenant's blobs ever served (one per `Id`, expired blobs included:
//! the audit log keeps what the Management Activity API no longer serves), rendered byte for
//! byte as the Management Activity API serves them. Queries go `notStarted` → `running` →
//! `succeeded` over `run_time`; a query matching more than `record_limit` records is cut there
//! (v1.0 says so with `isRecordCountLimitExceeded`, beta says nothing); at most `max_active`
//! queries may be unfinished (429 beyond); and faults can be injected: HTTP 500 past
//! `error_after` records of a query, and broken JSON in some pages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::records::{h, render};
use super::tenant::Tenant;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditLogScenario {
    pub retention_days: f64,
    pub record_limit: usize,
    pub max_active: usize,
    #[serde(with = "humantime_serde")]
    pub run_time: Duration,
    pub page_size: usize,
    /// A records page reaching past this many records of one query answers 500 (0: never)...
    pub error_after: usize,
    /// ...in every n-th query created (1: all of them).
    pub error_every_query: u64,
    /// Every n-th records page answers broken JSON, once (0: never).
    pub broken_page_every: u64,
}

impl Default for AuditLogScenario {
    fn default() -> Self {
        AuditLogScenario {
            retention_days: 180.0,
            record_limit: 1_000_000,
            max_active: 50,
            run_time: Duration::from_millis(300),
            page_size: 500,
            error_after: 0,
            error_every_query: 1,
            broken_page_every: 0,
        }
    }
}

/// One record of the log: where it comes from and when it happened.
#[derive(Debug, Clone, Copy)]
struct Entry {
    time_ms: i64,
    ct: usize,
    seq: u64,
    idx: u32,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueryRequest {
    #[serde(default)]
    pub display_name: String,
    pub filter_start_date_time: Option<String>,
    pub filter_end_date_time: Option<String>,
    #[serde(default)]
    pub record_type_filters: Vec<String>,
    #[serde(default)]
    pub operation_filters: Vec<String>,
    #[serde(default)]
    pub user_principal_name_filters: Vec<String>,
}

pub struct Query {
    pub id: String,
    pub request: QueryRequest,
    pub version: String,
    created: Instant,
    /// Its number, in order of creation.
    no: u64,
    /// What it matched, capped at the record limit.
    entries: Vec<Entry>,
    pub exceeded: bool,
}

/// What tests look at.
#[derive(Debug, Default, Clone, Serialize)]
pub struct AuditLogStats {
    pub created: u64,
    /// `(start, end)` of each created query, in order.
    pub windows: Vec<(String, String)>,
    pub throttled: u64,
    pub server_errors: u64,
    pub broken_pages: u64,
    /// First-page reads per query id.
    pub first_page_reads: HashMap<String, u32>,
    pub most_active: usize,
}

#[derive(Default)]
pub struct AuditLog {
    index: Mutex<(usize, Vec<Entry>)>,
    pub queries: Mutex<HashMap<String, Query>>,
    pub stats: Mutex<AuditLogStats>,
    pages: Mutex<u64>,
}

/// The `auditLogRecordType` name of a rendered record's `RecordType`.
fn record_type_name(n: i64) -> &'static str {
    match n {
        1 => "exchangeAdmin",
        2 => "exchangeItem",
        6 => "sharePointFileOperation",
        13 => "complianceDLPExchange",
        15 => "azureActiveDirectoryStsLogon",
        25 => "microsoftTeams",
        50 => "exchangeItemAggregated",
        _ => "unknownFutureValue",
    }
}

impl Tenant {
    /// Every record of the log, oldest first (rebuilt when live blobs were added).
    fn audit_entries(&self) -> Vec<Entry> {
        let blobs = self.all_blobs();
        let mut idx = self.audit.index.lock().expect("index");
        if idx.0 != blobs.len() || idx.1.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let mut v = Vec::new();
            for b in &blobs {
                for i in 0..b.records {
                    let (oseq, oidx, _) = self.origin(b.ct, b.seq, i);
                    if !seen.insert((b.ct, oseq, oidx)) {
                        continue;
                    }
                    let Some(ob) = self.blob_at(b.ct, oseq) else { continue };
                    let t = self.record_event_time(&ob, oseq, oidx).timestamp_millis();
                    v.push(Entry { time_ms: t, ct: b.ct, seq: oseq, idx: oidx });
                }
            }
            v.sort_by_key(|e| e.time_ms);
            *idx = (blobs.len(), v);
        }
        idx.1.clone()
    }

    fn render_entry(&self, e: &Entry) -> String {
        let s = &self.scenario;
        let t = chrono::DateTime::from_timestamp_millis(e.time_ms).unwrap_or_default();
        render(s.seed, &s.tenant_id, &s.content_types[e.ct], e.ct, e.seq, e.idx, t, false, s.pad_records)
    }

    /// Ids of every record of the log with its time in `[since, until)` (within retention).
    pub fn audit_truth(&self, since_ms: i64, until_ms: i64) -> Vec<String> {
        let oldest = self.oldest_audit_ms();
        self.audit_entries()
            .iter()
            .filter(|e| e.time_ms >= since_ms.max(oldest) && e.time_ms < until_ms)
            .map(|e| super::records::record_id(self.scenario.seed, e.ct, e.seq, e.idx))
            .collect()
    }

    fn oldest_audit_ms(&self) -> i64 {
        let days = self.scenario.audit_log.retention_days;
        (self.now() - chrono::Duration::milliseconds((days * 86_400_000.0) as i64)).timestamp_millis()
    }

    fn matches(&self, e: &Entry, r: &QueryRequest) -> bool {
        if r.record_type_filters.is_empty()
            && r.operation_filters.is_empty()
            && r.user_principal_name_filters.is_empty()
        {
            return true;
        }
        let v: serde_json::Value = serde_json::from_str(&self.render_entry(e)).unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
        let rt = record_type_name(v.get("RecordType").and_then(|x| x.as_i64()).unwrap_or(0));
        let any = |list: &[String], x: &str| list.is_empty() || list.iter().any(|l| l.eq_ignore_ascii_case(x));
        any(&r.record_type_filters, rt)
            && any(&r.operation_filters, &field("Operation"))
            && any(&r.user_principal_name_filters, &field("UserId"))
    }

    /// Queries not finished yet.
    fn audit_active(&self, q: &HashMap<String, Query>) -> usize {
        q.values().filter(|q| q.created.elapsed() < self.scenario.audit_log.run_time).count()
    }

    /// `POST .../queries`: `Err(true)` when too many queries are unfinished (429).
    pub fn audit_create(&self, version: &str, r: QueryRequest) -> Result<serde_json::Value, bool> {
        let cfg = &self.scenario.audit_log;
        let parse = |s: &Option<String>| {
            s.as_deref().and_then(|x| chrono::DateTime::parse_from_rfc3339(x).ok()).map(|t| t.timestamp_millis())
        };
        let (Some(start), Some(end)) = (parse(&r.filter_start_date_time), parse(&r.filter_end_date_time)) else {
            return Err(false);
        };
        let entries = self.audit_entries();
        let mut queries = self.audit.queries.lock().expect("queries");
        let active = self.audit_active(&queries);
        if active >= cfg.max_active {
            self.audit.stats.lock().expect("stats").throttled += 1;
            return Err(true);
        }
        let oldest = self.oldest_audit_ms();
        let mut matched: Vec<Entry> = entries
            .into_iter()
            .filter(|e| e.time_ms >= start.max(oldest) && e.time_ms < end && self.matches(e, &r))
            .collect();
        let exceeded = matched.len() > cfg.record_limit;
        matched.truncate(cfg.record_limit);
        let n = self.audit.stats.lock().expect("stats").created;
        let id = super::records::guid(h(&[self.scenario.seed, 0xA0D1, n]), h(&[self.scenario.seed, 0xA0D2, n]));
        let q = Query {
            id: id.clone(),
            request: r,
            version: version.into(),
            created: Instant::now(),
            no: n,
            entries: matched,
            exceeded,
        };
        let body = self.query_json(&q);
        {
            let mut st = self.audit.stats.lock().expect("stats");
            st.created += 1;
            let w = (
                q.request.filter_start_date_time.clone().unwrap_or_default(),
                q.request.filter_end_date_time.clone().unwrap_or_default(),
            );
            st.windows.push(w);
            st.most_active = st.most_active.max(active + 1);
        }
        queries.insert(id, q);
        Ok(body)
    }

    fn status_of(&self, q: &Query) -> &'static str {
        let run = self.scenario.audit_log.run_time;
        match q.created.elapsed() {
            e if e < run / 3 => "notStarted",
            e if e < run => "running",
            _ => "succeeded",
        }
    }

    pub fn query_json(&self, q: &Query) -> serde_json::Value {
        let mut v = serde_json::json!({
            "@odata.type": "#microsoft.graph.security.auditLogQuery",
            "id": q.id,
            "displayName": q.request.display_name,
            "filterStartDateTime": q.request.filter_start_date_time,
            "filterEndDateTime": q.request.filter_end_date_time,
            "recordTypeFilters": q.request.record_type_filters,
            "operationFilters": q.request.operation_filters,
            "userPrincipalNameFilters": q.request.user_principal_name_filters,
            "status": self.status_of(q),
        });
        // The 2026 v1.0 resource says whether the record limit cut the query; beta does not.
        if q.version == "v1.0" {
            let m = v.as_object_mut().expect("object");
            m.insert("recordCountLimit".into(), serde_json::json!(self.scenario.audit_log.record_limit));
            m.insert("isRecordCountLimitExceeded".into(), serde_json::json!(q.exceeded));
            m.insert("approximateReturnedRecordCount".into(), serde_json::json!(q.entries.len()));
        }
        v
    }

    pub fn audit_list(&self) -> Vec<serde_json::Value> {
        let q = self.audit.queries.lock().expect("queries");
        let mut v: Vec<&Query> = q.values().collect();
        v.sort_by_key(|q| q.no);
        v.into_iter().map(|q| self.query_json(q)).collect()
    }

    pub fn audit_status(&self, id: &str) -> Option<serde_json::Value> {
        let q = self.audit.queries.lock().expect("queries");
        q.get(id).map(|q| self.query_json(q))
    }

    /// One records page from `skip`: `Ok(body)`, or the status and error to answer.
    pub fn audit_records(&self, base: &str, id: &str, skip: usize) -> Result<String, (u16, &'static str)> {
        let cfg = &self.scenario.audit_log;
        let (entries, version, no) = {
            let q = self.audit.queries.lock().expect("queries");
            let Some(q) = q.get(id) else { return Err((404, "query not found")) };
            if self.status_of(q) != "succeeded" {
                return Err((400, "The query is not ready."));
            }
            let end = (skip + cfg.page_size).min(q.entries.len());
            (q.entries[skip.min(end)..end].to_vec(), q.version.clone(), q.no)
        };
        if skip == 0 {
            *self.audit.stats.lock().expect("stats").first_page_reads.entry(id.to_string()).or_insert(0) += 1;
        }
        if cfg.error_after > 0
            && skip + entries.len() > cfg.error_after
            && no.is_multiple_of(cfg.error_every_query.max(1))
        {
            self.audit.stats.lock().expect("stats").server_errors += 1;
            return Err((500, "An internal server error occurred."));
        }
        let page_no = {
            let mut p = self.audit.pages.lock().expect("pages");
            *p += 1;
            *p
        };
        let total = self.audit.queries.lock().expect("queries").get(id).map_or(0, |q| q.entries.len());
        let mut out = String::from("{\"@odata.context\":\"https://graph.microsoft.com/");
        out.push_str(&version);
        out.push_str("/$metadata#security/auditLog/queries('");
        out.push_str(id);
        out.push_str("')/records\",\"value\":[");
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let data = self.render_entry(e);
            let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
            let f = |k: &str| {
                serde_json::to_string(v.get(k).and_then(|x| x.as_str()).unwrap_or_default()).unwrap_or_default()
            };
            let created = chrono::DateTime::from_timestamp_millis(e.time_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            out.push_str(&format!(
                "{{\"id\":{},\"createdDateTime\":\"{created}\",\"auditLogRecordType\":\"{}\",\"operation\":{},\"organizationId\":{},\"userType\":\"regular\",\"userId\":{},\"service\":{},\"objectId\":{},\"userPrincipalName\":{},\"clientIp\":{},\"administrativeUnits\":[],\"auditData\":{data}}}",
                f("Id"),
                record_type_name(v.get("RecordType").and_then(|x| x.as_i64()).unwrap_or(0)),
                f("Operation"),
                f("OrganizationId"),
                f("UserId"),
                f("Workload"),
                f("ObjectId"),
                f("UserId"),
                f("ClientIP"),
            ));
        }
        out.push(']');
        if skip + entries.len() < total {
            out.push_str(&format!(
                ",\"@odata.nextLink\":\"{base}/{version}/security/auditLog/queries/{id}/records?$skiptoken={}\"",
                skip + entries.len()
            ));
        }
        out.push('}');
        if cfg.broken_page_every > 0 && page_no.is_multiple_of(cfg.broken_page_every) {
            self.audit.stats.lock().expect("stats").broken_pages += 1;
            // Cut inside a record, as reported: the page does not parse.
            out.truncate(out.len() * 2 / 3);
        }
        Ok(out)
    }

    /// The `auditData` bytes of a record, as the audit log serves them.
    pub fn audit_raw(&self, id: &str) -> Option<String> {
        let seed = self.scenario.seed;
        self.audit_entries()
            .iter()
            .find(|e| super::records::record_id(seed, e.ct, e.seq, e.idx) == id)
            .map(|e| self.render_entry(e))
    }

    pub fn audit_stats(&self) -> AuditLogStats {
        self.audit.stats.lock().expect("stats").clone()
    }
}
