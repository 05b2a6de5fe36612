//! Outbound calls through a forward proxy: the configured one (with basic credentials from a
//! file) and the standard `HTTPS_PROXY` variable. The proxy is a CONNECT tunnel written for the
//! test, which counts what went through it.

#![cfg(feature = "simulator")]

mod common;

use std::time::Duration;

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::proxy::ConnectProxy;
use common::{BinaryDaemon, Harness, assert_exactly_once, wait_until};

fn small() -> Scenario {
    Scenario { history_records: 1_500, content_types: vec!["Audit.Exchange".into()], ..Scenario::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_goes_through_the_configured_proxy_with_the_credentials_from_its_file() {
    let proxy = ConnectProxy::start(Some("collector:s3cret-proxy-pass")).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("proxy-credentials");
    std::fs::write(&creds, "collector:s3cret-proxy-pass\n").unwrap();
    let http = format!("proxy = \"{}\"\nproxy_credentials_file = \"{}\"", proxy.url(), creds.display());
    let h = Harness::new(small(), ConfigExtras { http, ..Default::default() }).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let got = h.wait_complete(Duration::from_secs(60)).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
    let target = format!("localhost:{}", h.sim.addr.port());
    assert!(proxy.tunnels_to(&target) > 0, "no tunnel to {target}: {:?}", proxy.tunnels.lock().unwrap());
    assert_eq!(*proxy.refused.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_the_credentials_lets_nothing_through_and_the_secret_stays_out_of_status() {
    let proxy = ConnectProxy::start(Some("collector:right")).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("proxy-credentials");
    std::fs::write(&creds, "collector:wrong-proxy-pass").unwrap();
    let http = format!("proxy = \"{}\"\nproxy_credentials_file = \"{}\"", proxy.url(), creds.display());
    let h = Harness::new(small(), ConfigExtras { http, ..Default::default() }).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    // Every call, the token request first, needs the proxy: nothing reaches the tenant.
    // Retries go the same way: several refusals, and still nothing around the proxy.
    wait_until("the proxy to refuse calls", Duration::from_secs(30), || *proxy.refused.lock().unwrap() >= 3).await;
    daemon.stop().await.expect("clean shutdown");
    assert!(h.delivered().is_empty());
    assert_eq!(h.sim.tenant.stats().token_requests, 0, "a call went around the proxy");
    assert!(!h.status().contains("wrong-proxy-pass"), "{}", h.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_proxy_variable_is_honoured_without_any_proxy_in_the_config() {
    let proxy = ConnectProxy::start(None).await;
    let h = Harness::new(small(), ConfigExtras::default()).await;
    let url = proxy.url();
    let d = BinaryDaemon::spawn(&h.config, &[("HTTPS_PROXY", url.as_ref()), ("NO_PROXY", "".as_ref())]);
    let got = h.wait_complete(Duration::from_secs(60)).await;
    assert!(d.terminate().success());
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
    assert!(proxy.tunnels_to(&format!("localhost:{}", h.sim.addr.port())) > 0, "{:?}", proxy.tunnels.lock().unwrap());
}

/// Ids in NDJSON bodies a receiver got, with how often.
fn ids_at(rx: &common::receiver::Receiver) -> std::collections::HashMap<String, u32> {
    let mut m = std::collections::HashMap::new();
    for r in rx.received() {
        for line in r.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            *m.entry(v["Id"].as_str().unwrap().to_string()).or_insert(0) += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_sink_goes_through_its_own_proxy_and_one_set_to_none_ignores_the_environment() {
    use common::receiver::{Behaviour, Receiver};
    let own = ConnectProxy::start(Some("sink:pr0xy-pass")).await;
    let environment = ConnectProxy::start(None).await;
    let (via, direct) = (Receiver::start(Behaviour::default()).await, Receiver::start(Behaviour::default()).await);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("sink-proxy");
    std::fs::write(&creds, "sink:pr0xy-pass").unwrap();
    let sink = |name: &str, url: &str, proxy: &str| {
        format!(
            "\n[[sinks]]\ntype = \"http\"\npreset = \"generic\"\nname = \"{name}\"\nurl = \"{url}/in\"\nformat = \"ndjson\"\ncompression = \"none\"\n{proxy}\n"
        )
    };
    let extra =
        sink("via", &via.url, &format!("proxy = \"{}\"\nproxy_credentials_file = \"{}\"", own.url(), creds.display()))
            + &sink("direct", &direct.url, "proxy = \"none\"");
    let h = Harness::new(small(), ConfigExtras { extra_sinks: extra, ..Default::default() }).await;
    let truth = h.sim.tenant.truth();
    // The environment names a proxy for plain http:// too: only the sink without a proxy of
    // its own would take it, and that one said none.
    let env_proxy = environment.url();
    let d = BinaryDaemon::spawn(&h.config, &[("HTTP_PROXY", env_proxy.as_ref()), ("NO_PROXY", "".as_ref())]);
    wait_until("both receivers complete", Duration::from_secs(90), || {
        ids_at(&via).len() == truth.ids.len() && ids_at(&direct).len() == truth.ids.len()
    })
    .await;
    assert!(d.terminate().success());
    assert_exactly_once(&truth.ids, &ids_at(&via));
    assert_exactly_once(&truth.ids, &ids_at(&direct));
    let host = |url: &str| url.trim_start_matches("http://").to_string();
    assert!(own.tunnels_to(&host(&via.url)) > 0, "the sink's own proxy carried it: {:?}", own.tunnels.lock().unwrap());
    assert_eq!(*own.refused.lock().unwrap(), 0);
    assert!(environment.tunnels.lock().unwrap().is_empty(), "nothing took the environment's proxy");
}
