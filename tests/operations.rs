//! The real binary as an operator watches it: the systemd notify and watchdog protocol on a
//! socket this test reads, `/readyz` following a sink that dies and recovers, the retention
//! headroom against the simulator's clock, and the MailItemsAccessed throttling signal in
//! `status --json`.

#![cfg(feature = "simulator")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::receiver::{Behaviour, Receiver};
use common::{BinaryDaemon, Harness, parse_metrics, wait_until};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every datagram the daemon sent to the socket, with when it arrived.
type Heard = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(sock: UnixDatagram) -> Heard {
    let heard: Heard = Default::default();
    let h = heard.clone();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        // Ends with the test process; a read timeout only loops.
        loop {
            if let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                h.lock().unwrap().push((Instant::now(), text));
            }
        }
    });
    heard
}

fn keepalives(heard: &Heard) -> Vec<Instant> {
    heard.lock().unwrap().iter().filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).map(|(t, _)| *t).collect()
}

fn has(heard: &Heard, line: &str) -> bool {
    heard.lock().unwrap().iter().any(|(_, m)| m.lines().any(|l| l == line))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_then_keepalives_then_stopping_and_no_keepalive_while_the_store_is_wedged() {
    let scenario = Scenario { history_records: 600, live_records_per_sec: 20.0, ..Scenario::default() };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let sock_path = h.dir.path().join("notify.sock");
    let heard = listen(UnixDatagram::bind(&sock_path).unwrap());
    let log = h.dir.path().join("daemon.log");
    let env = [
        ("NOTIFY_SOCKET", sock_path.as_os_str()),
        // Keepalives every second, as systemd asks of a unit with WatchdogSec=2s.
        ("WATCHDOG_USEC", "2000000".as_ref()),
        // As under systemd: journald stamps each line itself.
        ("JOURNAL_STREAM", "8:123456".as_ref()),
        ("AUDITKEEPER_LOG", "info".as_ref()),
    ];
    let daemon = BinaryDaemon::spawn_logging(&h.config, &env, &log);
    wait_until("READY=1", Duration::from_secs(30), || has(&heard, "READY=1")).await;
    wait_until("three keepalives", Duration::from_secs(30), || keepalives(&heard).len() >= 3).await;
    h.wait_complete(Duration::from_secs(60)).await;
    let k = keepalives(&heard);
    let gaps: Vec<f64> = k.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!((0.7..=1.5).contains(&median), "keepalives at half of WATCHDOG_USEC (1 s), got gaps {gaps:?}");
    assert!(has(&heard, "STATUS=collecting"), "a status line");

    // Wedge the store: another connection holds the write lock, so the daemon's write probe
    // cannot finish. The keepalives must stop for as long as it lasts.
    let db = rusqlite::Connection::open(h.state_dir().join(auditkeeper::store::DB_FILE)).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let wedged_at = Instant::now();
    let withheld = auditkeeper::health::STORE_TIMEOUT + Duration::from_secs(4);
    wait_until("the daemon to say it withholds the keepalive", withheld + Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("withholding the watchdog keepalive")
    })
    .await;
    while wedged_at.elapsed() < withheld {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A probe that began just before the wedge may still have answered within its tick.
    let during: Vec<_> =
        keepalives(&heard).into_iter().filter(|t| *t > wedged_at + Duration::from_millis(1500)).collect();
    assert!(during.is_empty(), "{} keepalive(s) sent while the store was wedged", during.len());
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    let released = Instant::now();
    wait_until("keepalives to resume once the store is writable", Duration::from_secs(30), || {
        keepalives(&heard).iter().any(|t| *t > released)
    })
    .await;

    assert!(daemon.terminate().success(), "clean exit on SIGTERM");
    wait_until("STOPPING=1", Duration::from_secs(5), || has(&heard, "STOPPING=1")).await;
    // In that order: READY before any keepalive, STOPPING after the last.
    let all = heard.lock().unwrap().clone();
    let at = |line: &str| all.iter().position(|(_, m)| m.lines().any(|l| l == line)).unwrap();
    let last_keepalive = all.iter().rposition(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).unwrap();
    assert!(at("READY=1") < at("WATCHDOG=1"), "{all:?}");
    assert!(last_keepalive < at("STOPPING=1"), "{all:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\x1b'), "no ANSI escapes in a log that is not a terminal");
    let stamped = text.lines().filter(|l| l.len() > 20 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b'T').count();
    assert_eq!(stamped, 0, "no timestamps under journald:\n{text}");
    assert!(text.contains("collector started"), "info lines are written:\n{text}");
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_sink_that_died_and_is_ready_again_once_it_delivers() {
    let rx = Receiver::start(Behaviour::default()).await;
    let port = free_port();
    let extra = format!(
        "[[sinks]]\ntype = \"http\"\npreset = \"generic\"\nname = \"collector\"\nurl = \"{}/ingest\"\nbatch = {{ max_records = 200, linger = \"100ms\" }}\n",
        rx.url
    );
    let telemetry = format!("listen = \"127.0.0.1:{port}\"\nsink_stale_after = \"5s\"");
    let scenario = Scenario {
        history_records: 1_000,
        live_records_per_sec: 50.0,
        content_types: vec!["Audit.Exchange".into()],
        ..Scenario::default()
    };
    let h = Harness::new(scenario, ConfigExtras { extra_sinks: extra, telemetry, ..ConfigExtras::default() }).await;
    let daemon = BinaryDaemon::spawn(&h.config, &[]);
    let (readyz, healthz) = (format!("http://127.0.0.1:{port}/readyz"), format!("http://127.0.0.1:{port}/healthz"));
    h.wait_complete(Duration::from_secs(60)).await;
    let (mut code, mut body) = get(&readyz).await;
    let start = Instant::now();
    while code != 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "never ready: {code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        (code, body) = get(&readyz).await;
    }
    assert_eq!(body, "ready\n");

    rx.set_down(true);
    wait_until("a send refused", Duration::from_secs(30), || rx.inner.lock().unwrap().refused > 0).await;
    let start = Instant::now();
    while code == 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "still ready with the sink down: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        (code, body) = get(&readyz).await;
    }
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("sink collector has"), "the body names the sink: {body}");
    assert!(!body.contains("sink archive"), "the file sink still delivers: {body}");
    // A sink that is down is no reason to restart the collector.
    assert_eq!(get(&healthz).await.0, 200);

    rx.set_down(false);
    let start = Instant::now();
    while code != 200 {
        assert!(start.elapsed() < Duration::from_secs(60), "not ready again after the sink came back: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        (code, body) = get(&readyz).await;
    }
    assert!(daemon.terminate().success());
    // Nothing the outage held back was lost: every record the file sink has, the collector has.
    let mut got: HashMap<String, u32> = HashMap::new();
    for r in rx.received() {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let lines: Vec<serde_json::Value> = match v {
            serde_json::Value::Array(a) => a,
            _ => String::from_utf8_lossy(&r.body).lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
        };
        for rec in lines {
            *got.entry(rec["Id"].as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
        }
    }
    let archive = h.delivered();
    let missing = archive.keys().filter(|id| !got.contains_key(*id)).count();
    let twice = got.values().filter(|n| **n > 1).count();
    assert!(archive.len() > 1_000, "live records arrived during the test");
    assert_eq!((missing, twice), (0, 0), "every record once at the collector");
}

/// The gauge of `stream_name`, by the stream's name in the store.
fn gauge(metrics: &HashMap<(String, String), f64>, metric: &str, stream: &str) -> Option<f64> {
    metrics.iter().find(|((n, l), _)| n == metric && l.contains(&format!("/{stream}\""))).map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_counts_down_to_the_expiry_of_a_blob_not_yet_fetched() {
    const WEEK: i64 = 7 * 86_400;
    let port = free_port();
    let mut scenario = Scenario {
        // The oldest blob is some 28 minutes from the 7-day edge, and cannot be fetched.
        history_days: 6.98,
        history_records: 1_200,
        // SharePoint first: the oldest blob of all is its first.
        content_types: vec!["Audit.SharePoint".into(), "Audit.Exchange".into()],
        duplicate_fraction: 0.0,
        ..Scenario::default()
    };
    scenario.attacks.unavailable_content_type = Some("Audit.SharePoint".into());
    scenario.attacks.unavailable_blobs = 1;
    let telemetry = format!("listen = \"127.0.0.1:{port}\"");
    let h = Harness::new(scenario, ConfigExtras { telemetry, ..ConfigExtras::default() }).await;
    let doomed = h.sim.tenant.blob_at(0, 0).expect("the first SharePoint blob");
    let expires_ms = (doomed.created + chrono::Duration::days(7)).timestamp_millis();
    let daemon = BinaryDaemon::spawn(&h.config, &[]);
    h.wait_complete(Duration::from_secs(60)).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let metric = "auditkeeper_stream_retention_headroom_seconds";
    let mut m = HashMap::new();
    let start = Instant::now();
    while gauge(&m, metric, "Audit.SharePoint").is_none_or(|v| v > 3_600.0)
        || gauge(&m, metric, "Audit.Exchange").is_none()
    {
        assert!(start.elapsed() < Duration::from_secs(60), "no headroom gauges: {m:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        m = parse_metrics(&get(&url).await.1);
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    // The gauge is refreshed every 10 s, so it may be that much older than the scrape.
    let want = (expires_ms - now_ms) as f64 / 1000.0;
    let got = gauge(&m, metric, "Audit.SharePoint").unwrap();
    assert!((got - want).abs() <= 15.0, "SharePoint headroom {got} s, its unfetched blob expires in {want} s");
    assert!((1_000.0..1_800.0).contains(&want), "the blob is about to expire: {want} s");

    // With nothing pending, headroom is the cursor's distance to the 7-day edge.
    let store = auditkeeper::store::Store::open_read_only(&h.state_dir()).unwrap();
    let exchange = store.streams().unwrap().into_iter().find(|s| s.name == "Audit.Exchange").unwrap();
    assert_eq!(exchange.pending_expiration_ms, None);
    let cursor = auditkeeper::sources::window::parse_cursor(exchange.cursor.as_deref().unwrap()).unwrap();
    let want = (cursor.timestamp_millis() + WEEK * 1000 - chrono::Utc::now().timestamp_millis()) as f64 / 1000.0;
    let got = gauge(&m, metric, "Audit.Exchange").unwrap();
    assert!((got - want).abs() <= 30.0, "Exchange headroom {got} s, the cursor says {want} s");
    assert!(got > (WEEK - 3_600) as f64, "a caught-up stream has almost the whole week: {got}");

    // `status --json` says the same, computed when it is asked.
    let report = status_json(&h);
    let sp = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"].as_str().unwrap().ends_with("/Audit.SharePoint"))
        .unwrap()
        .clone();
    let want = (expires_ms - chrono::Utc::now().timestamp_millis()) / 1000;
    assert!((sp["headroom_seconds"].as_i64().unwrap() - want).abs() <= 2, "{sp}");
    assert!(daemon.terminate().success());
}

fn status_json(h: &Harness) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["status", "--json", "--config"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_lists_exactly_the_mailboxes_whose_mail_items_accessed_auditing_was_throttled() {
    let scenario =
        Scenario { history_records: 6_000, content_types: vec!["Audit.Exchange".into()], ..Scenario::default() };
    let port = free_port();
    let telemetry = format!("listen = \"127.0.0.1:{port}\"");
    let h = Harness::new(scenario, ConfigExtras { telemetry, ..ConfigExtras::default() }).await;
    let daemon = BinaryDaemon::spawn(&h.config, &[]);
    h.wait_complete(Duration::from_secs(60)).await;
    wait_until("the archive's offset committed", Duration::from_secs(30), || h.backlog("archive") == 0).await;
    // What the records say, read from what was delivered, independently of the collector.
    let mut want: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for line in auditkeeper::sinks::file::read::read_lines(&h.records_dir()).unwrap() {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let throttled = v["OperationProperties"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x["Name"] == "IsThrottled" && x["Value"] == "True"));
        if v["Operation"] != "MailItemsAccessed" || !throttled {
            continue;
        }
        let at = auditkeeper::sources::record::parse_time_ms(v["CreationTime"].as_str().unwrap()).unwrap();
        let e = want.entry(v["MailboxOwnerUPN"].as_str().unwrap().to_string()).or_insert((at, at, 0));
        *e = (e.0.min(at), e.1.max(at), e.2 + 1);
    }
    assert!(want.len() >= 2, "the scenario throttles several mailboxes: {want:?}");
    let report = status_json(&h);
    let metrics = parse_metrics(&get(&format!("http://127.0.0.1:{port}/metrics")).await.1);
    assert!(daemon.terminate().success());
    let mut got: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for m in report["throttled_mailboxes"].as_array().unwrap() {
        assert_eq!(m["tenant"], "contoso");
        let t = |k: &str| auditkeeper::sources::record::parse_time_ms(m[k].as_str().unwrap()).unwrap();
        got.insert(m["mailbox"].as_str().unwrap().into(), (t("first"), t("last"), m["records"].as_i64().unwrap()));
    }
    assert_eq!(got, want);
    // The counter agrees, per tenant, and the table names each mailbox.
    let total: i64 = want.values().map(|v| v.2).sum();
    let key = ("auditkeeper_mail_items_accessed_throttled_total".to_string(), "tenant=\"contoso\"".to_string());
    assert_eq!(metrics.get(&key).copied(), Some(total as f64), "{metrics:?}");
    let text = auditkeeper::status::render(&h.state_dir()).unwrap();
    for mailbox in want.keys() {
        assert!(text.contains(mailbox.as_str()), "status names {mailbox}:\n{text}");
    }
}
