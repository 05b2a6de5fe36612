//! Many simulated tenants behind one daemon: a simulator each (its own seed, so record ids differ
//! as real GUIDs do), their CAs in one bundle, a config with one `[[tenants]]` entry per tenant
//! named, and deliveries checked per tenant against each simulator's ground truth.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use auditkeeper::simulator::{Scenario, Simulator};

use super::BinaryDaemon;

/// A small tenant whose collection time is set by Microsoft's answers (300 ms each), not by
/// CPU: many of them side by side should take no longer than one.
pub fn tenant(seed: u64) -> Scenario {
    Scenario {
        seed,
        history_records: 120,
        records_per_blob: 20,
        content_types: vec!["Audit.Exchange".into(), "Audit.SharePoint".into()],
        latency: Duration::from_millis(300),
        ..Scenario::default()
    }
}

/// The real binary on the fleet's config, logging to `daemon.log`.
pub fn spawn(f: &Fleet) -> BinaryDaemon {
    BinaryDaemon::spawn_logging(&f.config, &[], &f.log_path())
}

/// Waits until every record of each tenant in `names` is delivered; returns how long it took.
pub async fn complete(f: &Fleet, names: &[String], timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = f.delivered();
        let missing: Vec<(String, usize)> =
            names.iter().map(|n| (n.clone(), f.missing(n, &got))).filter(|(_, m)| *m > 0).collect();
        if missing.is_empty() {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "still missing after {timeout:?}: {missing:?}\n{}", f.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `ok` until it holds; on timeout, fails showing status and the daemon's log.
pub async fn wait_for(what: &str, timeout: Duration, f: &Fleet, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}\n{}\n{}", f.status(), f.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct Member {
    pub name: String,
    pub sim: Simulator,
    /// The client secret file the config names (a test may write a wrong secret into it).
    pub secret: PathBuf,
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    pub config: PathBuf,
    /// Where `/metrics` listens.
    pub metrics_port: u16,
}

impl Fleet {
    pub async fn start(specs: Vec<(String, Scenario)>) -> Fleet {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut members = Vec::new();
        let mut bundle = String::new();
        for (name, scenario) in specs {
            let ca = dir.path().join(format!("ca-{name}.pem"));
            let sim = Simulator::start(scenario, "127.0.0.1:0".parse().unwrap(), &ca).await.unwrap();
            bundle.push_str(&std::fs::read_to_string(&ca).unwrap());
            let secret = dir.path().join(format!("secret-{name}"));
            std::fs::write(&secret, &sim.tenant.scenario.client_secret).unwrap();
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
            members.push(Member { name, sim, secret });
        }
        std::fs::write(dir.path().join("ca-bundle.pem"), bundle).unwrap();
        let config = dir.path().join("auditkeeper.toml");
        let metrics_port = super::rsyslog::free_port(false);
        Fleet { dir, members, config, metrics_port }
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no tenant {name}"))
    }

    pub fn records_dir(&self) -> PathBuf {
        self.dir.path().join("records")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes the config with the tenants `names`, in that order; `tenant_extra` adds lines to
    /// each tenant's table and `http` to `[http]`.
    pub fn write_config(&self, names: &[&str], http: &str, tenant_extra: impl Fn(&str) -> String) {
        let mut text = format!(
            "state_dir = \"{state}\"\nshutdown_timeout = \"10s\"\n\n[http]\nca_file = \"{ca}\"\n{http}\n\n[log]\nlevel = \"info\"\n\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n\n[spool]\nmin_free_bytes = \"8MiB\"\n\n",
            state = self.state_dir().display(),
            ca = self.dir.path().join("ca-bundle.pem").display(),
            port = self.metrics_port,
        );
        for name in names {
            let m = self.member(name);
            let s = &m.sim.tenant.scenario;
            let base = m.sim.base_url();
            let cts: Vec<String> = s.content_types.iter().map(|c| format!("{c:?}")).collect();
            text.push_str(&format!(
                "[[tenants]]\nname = \"{name}\"\ntenant_id = \"{tid}\"\nclient_id = \"{cid}\"\nclient_secret_file = \"{secret}\"\n{extra}\n[tenants.endpoints]\nauthority = \"{base}\"\nmanagement = \"{base}\"\ngraph = \"{base}\"\narm = \"{base}\"\n[tenants.management_activity]\ncontent_types = [{cts}]\npoll_interval = \"1s\"\noverlap = \"1h\"\n[tenants.graph]\nenabled = false\n[tenants.audit_query]\nenabled = false\n\n",
                tid = s.tenant_id,
                cid = s.client_id,
                secret = m.secret.display(),
                extra = tenant_extra(name),
                cts = cts.join(", "),
            ));
        }
        text.push_str(&format!(
            "[[sinks]]\ntype = \"file\"\nname = \"archive\"\npath = \"{}\"\n",
            self.records_dir().display()
        ));
        std::fs::write(&self.config, text).unwrap();
    }

    /// Every delivered record id, with how often.
    pub fn delivered(&self) -> HashMap<String, u32> {
        auditkeeper::demo::delivered_ids(&self.records_dir()).unwrap_or_default()
    }

    /// How many of `name`'s records are not delivered yet.
    pub fn missing(&self, name: &str, delivered: &HashMap<String, u32>) -> usize {
        self.member(name).sim.tenant.truth().ids.iter().filter(|i| !delivered.contains_key(*i)).count()
    }

    /// `name`'s records as delivered: each of its ids and how often.
    pub fn delivered_of(&self, name: &str, delivered: &HashMap<String, u32>) -> HashMap<String, u32> {
        let ids: HashSet<String> = self.member(name).sim.tenant.truth().ids.into_iter().collect();
        delivered.iter().filter(|(k, _)| ids.contains(*k)).map(|(k, v)| (k.clone(), *v)).collect()
    }

    pub fn status(&self) -> String {
        auditkeeper::status::render(&self.state_dir()).unwrap_or_default()
    }

    pub async fn scrape(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }
}

/// The rows of status's stream table that belong to `tenant`.
pub fn status_lines<'a>(status: &'a str, tenant: &str) -> Vec<&'a str> {
    let table = status.lines().skip_while(|l| !l.starts_with("streams:")).skip(1).take_while(|l| !l.trim().is_empty());
    table.filter(|l| l.split_whitespace().next() == Some(tenant)).collect()
}

/// What status says below its table about `tenant`'s streams (state and last error).
pub fn status_detail(status: &str, tenant: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for l in status.lines() {
        if l.trim().is_empty() {
            inside = false;
        } else if l.starts_with(&format!("  {tenant}/")) {
            inside = true;
        }
        if inside {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
