//! The simulated tenant's state: the blob catalogue per content type, subscriptions, issued
//! tokens, request statistics and the ground truth of record Ids.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::records::{h, record_id, render, unit};
use super::scenario::Scenario;

#[derive(Debug, Clone)]
pub struct Blob {
    pub ct: usize,
    pub seq: u64,
    pub content_id: String,
    pub created: DateTime<Utc>,
    pub visible_at: DateTime<Utc>,
    pub expired: bool,
    /// Serves a gzip bomb instead of its records (`Attacks::bomb_content_type`).
    pub bomb: bool,
    /// Answers 503 to every fetch (`Attacks::unavailable_content_type`).
    pub unavailable: bool,
    pub records: u32,
}

#[derive(Debug, Clone)]
pub struct Sub {
    pub enabled: bool,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Clone)]
pub struct Stats {
    pub api_requests: u64,
    pub requests_without_publisher: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub token_requests: u64,
    pub list_requests: u64,
    pub blob_fetches: u64,
    /// Content ids fetched successfully more than once: should stay empty.
    pub blobs_fetched_twice: Vec<String>,
    /// `resource as client` of every managed identity token request.
    pub managed_identity_requests: Vec<String>,
    /// Requests left unanswered (`attacks.hang`).
    pub hung: u64,
}

#[derive(Debug, Default, Serialize, Clone)]
pub struct Truth {
    /// Unique record Ids a complete collector must deliver.
    pub ids: Vec<String>,
    /// Ids only present in blobs that answer AF20051: lost at the source, must be counted.
    pub expired_only_ids: Vec<String>,
    pub expired_blobs: u64,
    /// Blobs serving a gzip bomb: their records are lost at the source, like expired ones.
    pub bomb_blobs: u64,
    /// Records served including re-deliveries of the same Id.
    pub records_served: u64,
    /// Of those, records in blobs that can be fetched (not expired).
    pub records_in_fetchable_blobs: u64,
    pub blobs: u64,
}

pub struct Tenant {
    pub scenario: Scenario,
    blobs: Mutex<Vec<Vec<Blob>>>,
    subs: Mutex<HashMap<usize, Sub>>,
    tokens: Mutex<HashMap<String, DateTime<Utc>>>,
    stats: Mutex<Stats>,
    fetched: Mutex<HashMap<String, u32>>,
    request_no: AtomicU64,
    live_on: AtomicBool,
    live_debt: Mutex<f64>,
    token_no: AtomicU64,
    /// Pre-rendered bodies (see `prerender`), so a benchmark measures the collector, not us.
    rendered: Mutex<HashMap<String, axum::body::Bytes>>,
    /// The Graph activity logs of the same tenant.
    pub graph: super::graph::GraphTenant,
    pub attack: super::hostile::AttackState,
    /// The unified audit log behind the audit log query API (`audit_log.rs`).
    pub audit: super::audit_log::AuditLog,
}

/// Records in each history blob, oldest first, summing to `history_records`.
fn blob_sizes(s: &Scenario) -> Vec<u32> {
    let max = s.records_per_blob.max(1) as u64;
    let min = if s.records_per_blob_min == 0 { max } else { (s.records_per_blob_min as u64).min(max) };
    let (mut left, mut out) = (s.history_records, Vec::new());
    while left > 0 {
        let n = min + h(&[s.seed, 50, out.len() as u64]) % (max - min + 1);
        let n = n.min(left);
        left -= n;
        out.push(n as u32);
    }
    out
}

impl Tenant {
    pub fn new(scenario: Scenario) -> Tenant {
        let now = Utc::now() + chrono::Duration::seconds(scenario.clock_skew_secs);
        let cts = scenario.content_types.len().max(1);
        let mut blobs = vec![Vec::new(); cts];
        let sizes = blob_sizes(&scenario);
        let total_blobs = sizes.len() as u64;
        let span = chrono::Duration::milliseconds((scenario.history_days * 86_400_000.0) as i64);
        let mut subs = HashMap::new();
        if scenario.subscriptions_enabled {
            for ct in 0..cts {
                subs.insert(ct, Sub { enabled: true, started_at: now - chrono::Duration::days(30) });
            }
        }
        let t = Tenant {
            blobs: Mutex::new(Vec::new()),
            subs: Mutex::new(subs),
            tokens: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            fetched: Mutex::new(HashMap::new()),
            request_no: AtomicU64::new(0),
            live_on: AtomicBool::new(scenario.live_records_per_sec > 0.0 || scenario.graph_live_records_per_sec > 0.0),
            live_debt: Mutex::new(0.0),
            token_no: AtomicU64::new(0),
            rendered: Mutex::new(HashMap::new()),
            graph: super::graph::GraphTenant::new(&scenario, now),
            attack: Default::default(),
            audit: Default::default(),
            scenario,
        };
        for (i, n) in sizes.into_iter().enumerate() {
            let i = i as u64;
            let ct = (i % cts as u64) as usize;
            // Spread over the history, newest last; leave the last minute free of history.
            let frac = i as f64 / total_blobs.max(1) as f64;
            let created = now - span + chrono::Duration::milliseconds((span.num_milliseconds() as f64 * frac) as i64)
                - chrono::Duration::seconds(60);
            let b = t.make_blob(ct, blobs[ct].len() as u64, created, n);
            blobs[ct].push(b);
        }
        *t.blobs.lock().expect("blobs") = blobs;
        t
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.scenario.clock_skew_secs)
    }

    fn make_blob(&self, ct: usize, seq: u64, created: DateTime<Utc>, records: u32) -> Blob {
        let s = &self.scenario;
        let r = h(&[s.seed, 100, ct as u64, seq]);
        let late = unit(r) < s.late_listing_fraction;
        let delay = if late { s.late_listing_max.mul_f64(unit(h(&[r, 1]))) } else { Duration::ZERO };
        Blob {
            ct,
            seq,
            content_id: format!(
                "{}${}${:016x}",
                created.format("%Y%m%d%H%M%S%3f"),
                s.content_types[ct].replace('.', ""),
                h(&[r, 2])
            ),
            created,
            visible_at: created + chrono::Duration::from_std(delay).unwrap_or_default(),
            expired: unit(h(&[r, 3])) < s.expired_fraction,
            bomb: s.attacks.bomb_content_type.as_deref() == Some(s.content_types[ct].as_str())
                && seq < s.attacks.bomb_blobs as u64,
            unavailable: s.attacks.unavailable_content_type.as_deref() == Some(s.content_types[ct].as_str())
                && seq < s.attacks.unavailable_blobs as u64,
            records,
        }
    }

    /// Adds live blobs for the time elapsed since the last tick.
    pub fn tick(&self, elapsed: Duration) {
        if !self.live_on.load(Ordering::Relaxed) {
            return;
        }
        self.graph.tick(&self.scenario, elapsed, self.now());
        let per_blob = self.scenario.records_per_blob.max(1) as f64;
        let mut debt = self.live_debt.lock().expect("debt");
        *debt += self.scenario.live_records_per_sec * elapsed.as_secs_f64();
        let mut blobs = self.blobs.lock().expect("blobs");
        let cts = blobs.len();
        while *debt >= per_blob {
            *debt -= per_blob;
            let total: usize = blobs.iter().map(|b| b.len()).sum();
            let ct = total % cts;
            let seq = blobs[ct].len() as u64;
            let b = self.make_blob(ct, seq, self.now(), per_blob as u32);
            blobs[ct].push(b);
        }
    }

    /// Stops live generation so the ground truth stops growing.
    pub fn freeze(&self) {
        self.live_on.store(false, Ordering::Relaxed);
    }

    /// Record `(ct, seq, idx)` may re-deliver an earlier record: returns the identity it serves.
    pub(super) fn origin(&self, ct: usize, seq: u64, idx: u32) -> (u64, u32, bool) {
        let s = &self.scenario;
        let r = h(&[s.seed, 200, ct as u64, seq, idx as u64]);
        if seq > 0 && unit(r) < s.duplicate_fraction {
            let back = 1 + (h(&[r, 1]) % seq.min(5));
            let blobs = self.blobs.lock().expect("blobs");
            let n = blobs[ct][(seq - back) as usize].records.max(1);
            (seq - back, (h(&[r, 2]) % n as u64) as u32, true)
        } else {
            (seq, idx, false)
        }
    }

    pub fn record_event_time(&self, b: &Blob, oseq: u64, oidx: u32) -> DateTime<Utc> {
        let s = &self.scenario;
        let r = h(&[s.seed, 300, b.ct as u64, oseq, oidx as u64]);
        let lag = if unit(r) < s.old_events_fraction {
            chrono::Duration::seconds(86_400 + (h(&[r, 1]) % (2 * 86_400)) as i64)
        } else {
            chrono::Duration::seconds(60 + (h(&[r, 2]) % 5_400) as i64)
        };
        // Re-deliveries keep the original blob's time base.
        let base =
            if oseq == b.seq { b.created } else { self.blob(b.ct, oseq).map(|o| o.created).unwrap_or(b.created) };
        base - lag
    }

    fn blob(&self, ct: usize, seq: u64) -> Option<Blob> {
        self.blobs.lock().expect("blobs").get(ct)?.get(seq as usize).cloned()
    }

    /// A snapshot of every blob of every content type.
    pub(super) fn all_blobs(&self) -> Vec<Blob> {
        self.blobs.lock().expect("blobs").iter().flatten().cloned().collect()
    }

    /// Renders every current blob's body once and serves it from memory from then on.
    pub fn prerender(&self) {
        let blobs = self.all_blobs();
        let mut out = HashMap::with_capacity(blobs.len());
        for b in &blobs {
            out.insert(b.content_id.clone(), axum::body::Bytes::from(self.render_body(b)));
        }
        *self.rendered.lock().expect("rendered") = out;
    }

    /// The JSON array body of a blob.
    pub fn blob_body(&self, b: &Blob) -> axum::body::Bytes {
        if let Some(r) = self.rendered.lock().expect("rendered").get(&b.content_id) {
            return r.clone();
        }
        axum::body::Bytes::from(self.render_body(b))
    }

    fn render_body(&self, b: &Blob) -> String {
        let s = &self.scenario;
        let mut out = String::with_capacity(b.records as usize * 1700 + 2);
        out.push('[');
        for i in 0..b.records {
            if i > 0 {
                out.push(',');
            }
            let (oseq, oidx, dup) = self.origin(b.ct, b.seq, i);
            let t = self.record_event_time(b, oseq, oidx);
            out.push_str(&render(
                s.seed,
                &s.tenant_id,
                &s.content_types[b.ct],
                b.ct,
                oseq,
                oidx,
                t,
                dup,
                s.pad_records,
            ));
        }
        out.push(']');
        out
    }

    pub fn find_blob(&self, content_id: &str) -> Option<Blob> {
        self.blobs.lock().expect("blobs").iter().flatten().find(|b| b.content_id == content_id).cloned()
    }

    /// Blobs of `ct` created in `[start, end)` and visible now, in the order they became visible.
    pub fn listable(&self, ct: usize, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Blob> {
        let now = self.now();
        if let Some(sub) = self.subs.lock().expect("subs").get(&ct)
            && now - sub.started_at < chrono::Duration::from_std(self.scenario.warm_up).unwrap_or_default()
        {
            return Vec::new();
        }
        let blobs = self.blobs.lock().expect("blobs");
        let mut v: Vec<Blob> = blobs[ct]
            .iter()
            .filter(|b| b.created >= start && b.created < end && b.visible_at <= now)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.visible_at.cmp(&b.visible_at).then(a.seq.cmp(&b.seq)));
        v
    }

    pub fn ct_index(&self, name: &str) -> Option<usize> {
        self.scenario.content_types.iter().position(|c| c == name)
    }

    pub fn subscription(&self, ct: usize) -> Option<Sub> {
        self.subs.lock().expect("subs").get(&ct).cloned()
    }

    pub fn start_subscription(&self, ct: usize) {
        let now = self.now();
        let mut subs = self.subs.lock().expect("subs");
        let e = subs.entry(ct).or_insert(Sub { enabled: false, started_at: now });
        if !e.enabled {
            e.enabled = true;
            e.started_at = now;
        }
    }

    /// An administrator disables a subscription (the API then answers AF20023).
    pub fn disable_subscription(&self, ct: usize) {
        if let Some(s) = self.subs.lock().expect("subs").get_mut(&ct) {
            s.enabled = false;
        }
    }

    pub fn subscriptions(&self) -> Vec<(usize, Sub)> {
        let mut v: Vec<_> = self.subs.lock().expect("subs").iter().map(|(k, v)| (*k, v.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    pub fn issue_token(&self) -> String {
        let n = self.token_no.fetch_add(1, Ordering::Relaxed);
        let tok = format!("simtok.{}.{}", n, &record_id(self.scenario.seed, 99, n, 0)[..8]);
        let exp = self.now() + chrono::Duration::from_std(self.scenario.token_lifetime).unwrap_or_default();
        self.tokens.lock().expect("tokens").insert(tok.clone(), exp);
        self.stats.lock().expect("stats").token_requests += 1;
        tok
    }

    pub fn record_managed_identity_request(&self, who: String) {
        self.stats.lock().expect("stats").managed_identity_requests.push(who);
    }

    pub fn token_valid(&self, tok: &str) -> bool {
        self.tokens.lock().expect("tokens").get(tok).is_some_and(|e| *e > self.now())
    }

    /// Revokes every issued token (a test of 401 handling).
    pub fn revoke_tokens(&self) {
        self.tokens.lock().expect("tokens").clear();
    }

    pub fn next_request(&self) -> u64 {
        self.request_no.fetch_add(1, Ordering::Relaxed)
    }

    pub fn stats_mut<T>(&self, f: impl FnOnce(&mut Stats) -> T) -> T {
        f(&mut self.stats.lock().expect("stats"))
    }

    pub fn note_fetch(&self, content_id: &str) {
        let mut m = self.fetched.lock().expect("fetched");
        let n = m.entry(content_id.to_string()).or_insert(0);
        *n += 1;
        if *n == 2 {
            self.stats.lock().expect("stats").blobs_fetched_twice.push(content_id.to_string());
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().expect("stats").clone()
    }

    /// Every record Id the simulator has produced (or will list once late blobs become visible).
    pub fn truth(&self) -> Truth {
        let blobs = self.all_blobs();
        let mut ok: HashSet<String> = HashSet::new();
        let mut lost: HashSet<String> = HashSet::new();
        let mut t = Truth::default();
        for b in &blobs {
            t.blobs += 1;
            if b.expired {
                t.expired_blobs += 1;
            }
            if b.bomb {
                t.bomb_blobs += 1;
            }
            for i in 0..b.records {
                let (oseq, oidx, _) = self.origin(b.ct, b.seq, i);
                let id = record_id(self.scenario.seed, b.ct, oseq, oidx);
                t.records_served += 1;
                if b.expired || b.bomb || b.unavailable {
                    lost.insert(id);
                } else {
                    t.records_in_fetchable_blobs += 1;
                    ok.insert(id);
                }
            }
        }
        t.expired_only_ids = lost.difference(&ok).cloned().collect();
        t.ids = ok.into_iter().collect();
        t
    }

    /// Blob `seq` of content type `ct`, if it exists.
    pub fn blob_at(&self, ct: usize, seq: u64) -> Option<Blob> {
        self.blob(ct, seq)
    }

    /// Every record Id served by the blobs of one content type.
    pub fn ids_of(&self, ct: usize) -> Vec<String> {
        let blobs: Vec<Blob> = self.blobs.lock().expect("blobs")[ct].clone();
        let mut out = Vec::new();
        for b in &blobs {
            for i in 0..b.records {
                let (oseq, oidx, _) = self.origin(b.ct, b.seq, i);
                out.push(record_id(self.scenario.seed, b.ct, oseq, oidx));
            }
        }
        out
    }

    /// When the last blob becomes listable.
    pub fn last_visible_at(&self) -> Option<DateTime<Utc>> {
        self.blobs.lock().expect("blobs").iter().flatten().map(|b| b.visible_at).max()
    }
}
