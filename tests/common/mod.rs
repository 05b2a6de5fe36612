//! Shared test harness: a simulated tenant on 127.0.0.1, a config pointing at it, and helpers
//! that read what the file sink delivered and compare it with the simulator's ground truth.
#![allow(dead_code)]

pub mod eventhubs;
pub mod fleet;
pub mod proxy;
pub mod receiver;
pub mod rsyslog;
pub mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditkeeper::config::Settings;
use auditkeeper::demo::{ConfigExtras, delivered_ids, write_config};
use auditkeeper::simulator::{Scenario, Simulator};
use auditkeeper::store::Store;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    pub config: PathBuf,
}

impl Harness {
    pub async fn new(scenario: Scenario, extras: ConfigExtras) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = Simulator::start(scenario, "127.0.0.1:0".parse().unwrap(), &dir.path().join("ca.pem"))
            .await
            .expect("simulator");
        let config = write_config(dir.path(), &sim, &extras).expect("config");
        Harness { dir, sim, config }
    }

    pub fn settings(&self) -> Settings {
        auditkeeper::config::load_settings(&self.config).expect("valid config").0
    }

    pub fn records_dir(&self) -> PathBuf {
        self.dir.path().join("records")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn delivered(&self) -> HashMap<String, u32> {
        delivered_ids(&self.records_dir()).expect("read sink output")
    }

    /// Waits until every ground-truth Id has been delivered (or panics after `timeout`).
    pub async fn wait_complete(&self, timeout: Duration) -> HashMap<String, u32> {
        let start = Instant::now();
        loop {
            let truth = self.sim.tenant.truth();
            let got = self.delivered();
            let missing = truth.ids.iter().filter(|i| !got.contains_key(*i)).count();
            if missing == 0 {
                return got;
            }
            if start.elapsed() > timeout {
                let status = auditkeeper::status::render(&self.state_dir()).unwrap_or_default();
                panic!("{missing} of {} records still missing after {timeout:?}\n{status}", truth.ids.len());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until the sink holds at least `n` lines.
    pub async fn wait_lines(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while count_lines(&self.records_dir()) < n {
            assert!(start.elapsed() < timeout, "fewer than {n} records delivered after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn status(&self) -> String {
        auditkeeper::status::render(&self.state_dir()).unwrap_or_default()
    }

    /// Records waiting for `sink`, as its committed offset says.
    pub fn backlog(&self, sink: &str) -> i64 {
        Store::open_read_only(&self.state_dir())
            .and_then(|s| s.backlogs())
            .ok()
            .and_then(|b| b.into_iter().find(|x| x.sink == sink))
            .map_or(-1, |b| b.records)
    }

    /// Sum of a per-stream counter read from the store.
    pub fn stream_sum(&self, f: impl Fn(&auditkeeper::store::StreamStatus) -> i64) -> i64 {
        Store::open_read_only(&self.state_dir()).and_then(|s| s.streams()).map(|v| v.iter().map(f).sum()).unwrap_or(0)
    }
}

/// Polls `f` until it holds, or panics naming `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `name{labels} value` lines of a scrape, keyed by name and label text.
pub fn parse_metrics(body: &str) -> HashMap<(String, String), f64> {
    let mut m = HashMap::new();
    for l in body.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = l.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n.to_string(), rest.trim_end_matches('}').to_string()),
            None => (series.to_string(), String::new()),
        };
        m.insert((name, labels), value.parse().unwrap());
    }
    m
}

pub fn sum_metric(m: &HashMap<(String, String), f64>, name: &str) -> f64 {
    m.iter().filter(|((n, _), _)| n == name).map(|(_, v)| v).sum()
}

/// A real peer the test needs is not installed. Under `CI=true` (or `AUDITKEEPER_REQUIRE_PEERS=1`,
/// which `.ci/run` sets) that fails the test. Elsewhere the test is skipped, and the skip is
/// written straight to the terminal: libtest captures `eprintln!` of a passing test, which would
/// make the skip silent.
pub fn missing_peer(what: &str) {
    let required = std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("AUDITKEEPER_REQUIRE_PEERS").as_deref() == Ok("1");
    assert!(!required, "{what} is required under CI=true");
    use std::io::Write;
    let line = format!("\nSKIPPED: {what} is not installed\n");
    // The capture hooks the print macros only; a direct write to the handle passes it.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Asserts exactly-once delivery of the ground truth: every Id once, nothing unknown.
pub fn assert_exactly_once(truth_ids: &[String], got: &HashMap<String, u32>) {
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} records delivered more than once, e.g. {:?}", twice.len(), twice.first());
    let truth: std::collections::HashSet<&String> = truth_ids.iter().collect();
    let unknown: Vec<_> = got.keys().filter(|k| !truth.contains(k)).collect();
    assert!(unknown.is_empty(), "{} delivered ids are not in the ground truth", unknown.len());
    assert_eq!(got.len(), truth_ids.len(), "delivered count differs from ground truth");
}

pub fn count_lines(dir: &Path) -> usize {
    auditkeeper::sinks::file::read::read_lines(dir).map(|v| v.len()).unwrap_or(0)
}

/// The raw record lines the file sink wrote, keyed by Id: the bytes every other sink must carry.
pub fn raw_by_id(h: &Harness) -> HashMap<String, String> {
    auditkeeper::sinks::file::read::read_lines(&h.records_dir())
        .unwrap()
        .into_iter()
        .map(|l| (auditkeeper::sinks::file::read::record_id(&l).unwrap(), l))
        .collect()
}

/// The real binary running `run`; killed when dropped, so a failing test leaves no daemon behind.
pub struct BinaryDaemon(Option<std::process::Child>);

impl BinaryDaemon {
    pub fn spawn(config: &Path, env: &[(&str, &std::ffi::OsStr)]) -> BinaryDaemon {
        Self::spawn_to(config, env, std::process::Stdio::null())
    }

    /// Logs go to `log` (a file: a pipe nobody reads would fill up and stall the daemon).
    pub fn spawn_logging(config: &Path, env: &[(&str, &std::ffi::OsStr)], log: &Path) -> BinaryDaemon {
        Self::spawn_to(config, env, std::process::Stdio::from(std::fs::File::create(log).expect("log file")))
    }

    fn spawn_to(config: &Path, env: &[(&str, &std::ffi::OsStr)], stderr: std::process::Stdio) -> BinaryDaemon {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"));
        c.args(["run", "--config"]).arg(config);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.stdout(std::process::Stdio::null()).stderr(stderr).spawn().expect("spawn auditkeeper");
        BinaryDaemon(Some(child))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `kill -9`, as a crash would.
    pub fn kill(mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    /// SIGHUP: read the configuration again.
    pub fn hup(&self) {
        let c = self.0.as_ref().expect("running");
        unsafe { libc::kill(c.id() as i32, libc::SIGHUP) };
    }

    /// Still running (not exited)?
    pub fn alive(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM and the exit status of the orderly shutdown.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut c = self.0.take().expect("running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().expect("wait")
    }
}

impl Drop for BinaryDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
