//! The Event Hubs sink against a fake hub that is a real AMQP 1.0 peer (`common::eventhubs`),
//! driven by the real `azure_messaging_eventhubs` producer: exact bytes, properties and
//! partition keys; refused tokens; rejected, released and modified deliveries; throttling;
//! dropped connections; a killed collector; oversize records; both ways of signing in.

#![cfg(feature = "simulator")]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::eventhubs::{FakeEventHubs, NAMESPACE, StoredEvent};
use common::{BinaryDaemon, Harness, assert_exactly_once, raw_by_id};

const SAS_KEY: &str = "bXlTdXBlclNlY3JldFNBU0tleVZhbHVlMDAwMDAwMDA=";

fn scenario(records: u64) -> Scenario {
    Scenario { history_records: records, ..Scenario::default() }
}

/// A connection string file for the fake namespace, hub `audit`.
fn connection_file(dir: &Path) -> std::path::PathBuf {
    let f = dir.join("eh-connection");
    std::fs::write(
        &f,
        format!("Endpoint=sb://{NAMESPACE}/;SharedAccessKeyName=auditkeeper-send;SharedAccessKey={SAS_KEY};EntityPath=audit\n"),
    )
    .unwrap();
    f
}

fn sas_sink(fake: &FakeEventHubs, file: &Path, extra: &str) -> String {
    format!(
        "\n[[sinks]]\ntype = \"eventhubs\"\nname = \"hub\"\nconnection_string_file = \"{}\"\ncustom_endpoint = \"{}\"\n{extra}\n",
        file.display(),
        fake.endpoint()
    )
}

fn by_record(events: &[StoredEvent]) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for e in events {
        *m.entry(e.properties.get("record_id").cloned().unwrap_or_default()).or_insert(0) += 1;
    }
    m
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the collector in-process until the hub holds a record for every ground-truth id, then
/// stops it; returns the ground truth.
async fn run_until_on_hub(h: &Harness, fake: &FakeEventHubs) -> auditkeeper::simulator::Truth {
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let truth = h.sim.tenant.truth();
    h.wait_complete(Duration::from_secs(90)).await;
    wait_for("hub delivery", Duration::from_secs(120), || fake.event_count() >= truth.ids.len()).await;
    // Committed means nothing is in flight any more that could still land twice.
    wait_for("the hub sink's offset committed", Duration::from_secs(30), || h.backlog("hub") == 0).await;
    daemon.stop().await.expect("clean shutdown");
    truth
}

fn status(h: &Harness) -> String {
    auditkeeper::status::render(&h.state_dir()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_byte_identical_with_properties_partition_key_and_size_limit() {
    let fake = FakeEventHubs::start(1 << 20).await;
    let dir = tempfile::tempdir().unwrap();
    let max = 64 * 1024;
    let sink = sas_sink(
        &fake,
        &connection_file(dir.path()),
        &format!("partitioning = \"tenant_stream\"\nmax_message_bytes = {max}\nbatch = {{ max_records = 500 }}"),
    );
    let h = Harness::new(scenario(3_000), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let truth = h.sim.tenant.truth();
    h.wait_complete(Duration::from_secs(90)).await;
    wait_for("hub delivery", Duration::from_secs(60), || fake.event_count() >= truth.ids.len()).await;
    wait_for("the hub sink's offset committed", Duration::from_secs(30), || h.backlog("hub") == 0).await;
    let st = status(&h);
    daemon.stop().await.expect("clean shutdown");

    let events = fake.events();
    assert_exactly_once(&truth.ids, &by_record(&events));
    let raw = raw_by_id(&h);
    let collected_min = chrono::Utc::now() - chrono::Duration::minutes(10);
    for e in &events {
        let id = &e.properties["record_id"];
        assert_eq!(std::str::from_utf8(&e.body).unwrap(), raw[id], "the body is the record's original JSON");
        assert_eq!(e.properties["tenant"], "contoso");
        let (source, stream) = (&e.properties["source"], &e.properties["stream"]);
        assert!(!source.is_empty() && !stream.is_empty());
        assert_eq!(e.partition_key.as_deref(), Some(format!("contoso/{source}/{stream}").as_str()));
        let collected = chrono::DateTime::parse_from_rfc3339(&e.properties["collected_at"]).expect("RFC 3339");
        assert!(collected > collected_min);
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
        assert_eq!(e.message_id.as_deref(), Some(id.as_str()));
        assert_eq!(e.properties.len(), 5, "tenant, stream, source, record_id, collected_at: {:?}", e.properties);
    }
    let streams: std::collections::HashSet<_> = events.iter().map(|e| e.partition_key.clone()).collect();
    assert!(streams.len() >= 2, "several streams, several partition keys: {streams:?}");
    let transfers = fake.transfers();
    assert!(transfers.iter().all(|t| t.batch_format && t.target == format!("amqps://{NAMESPACE}/audit")));
    let biggest = transfers.iter().map(|t| t.bytes).max().unwrap();
    assert!(biggest <= max, "a message of {biggest} bytes exceeds max_message_bytes {max}");
    assert!(biggest > max / 2, "messages are filled towards the limit, the largest is {biggest}");
    assert!(transfers.len() < events.len() / 10, "{} messages for {} events", transfers.len(), events.len());
    assert!(!st.contains(SAS_KEY), "status must not show the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_shows_in_status_loses_nothing_and_recovers() {
    let fake = FakeEventHubs::start(1 << 20).await;
    fake.faults(|f| f.put_token_status = 401);
    let dir = tempfile::tempdir().unwrap();
    let sink = sas_sink(&fake, &connection_file(dir.path()), "");
    let h = Harness::new(scenario(1_000), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let truth = h.sim.tenant.truth();
    h.wait_complete(Duration::from_secs(90)).await;
    wait_for("the error in status", Duration::from_secs(30), || {
        let s = status(&h);
        eprintln!("{s}");
        s.contains("refused the credential")
    })
    .await;
    let st = status(&h);
    assert!(!st.contains(SAS_KEY), "status must not show the key:\n{st}");
    assert_eq!(fake.event_count(), 0);
    assert!(fake.tokens().iter().all(|t| !t.accepted && t.kind == "servicebus.windows.net:sastoken"));

    fake.faults(|f| f.put_token_status = 0);
    wait_for("delivery after the fix", Duration::from_secs(90), || fake.event_count() >= truth.ids.len()).await;
    wait_for("the hub sink's offset committed", Duration::from_secs(30), || h.backlog("hub") == 0).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&truth.ids, &by_record(&fake.events()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_released_modified_throttled_and_cut_deliveries_are_resent() {
    let fake = FakeEventHubs::start(1 << 20).await;
    fake.faults(|f| {
        f.reject = 2;
        f.release = 1;
        f.modify = 1;
        f.server_busy = 1;
        f.drop_connection = 1;
    });
    let dir = tempfile::tempdir().unwrap();
    // A connection cut while a transfer is unsettled is only noticed by the send timeout.
    let sink = sas_sink(&fake, &connection_file(dir.path()), "batch = { max_records = 200 }\ntimeout = \"5s\"");
    let h = Harness::new(scenario(2_000), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let truth = run_until_on_hub(&h, &fake).await;
    assert_eq!(fake.refused(), 6, "every injected fault was hit");
    let events = fake.events();
    assert_exactly_once(&truth.ids, &by_record(&events));
    assert!(events.iter().all(|e| e.partition_key.is_none()), "partitioning = none: the hub spreads events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_record_is_dead_lettered_and_the_rest_flow() {
    let fake = FakeEventHubs::start(1 << 20).await;
    let dir = tempfile::tempdir().unwrap();
    let max = 2_200u64;
    let sink = sas_sink(&fake, &connection_file(dir.path()), &format!("max_message_bytes = {max}"));
    let h = Harness::new(scenario(1_500), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let truth = h.sim.tenant.truth();
    h.wait_complete(Duration::from_secs(90)).await;
    let state = h.state_dir();
    let dead = || {
        auditkeeper::store::Store::open_read_only(&state)
            .unwrap()
            .dead_letter_counts()
            .unwrap()
            .first()
            .map_or(0, |c| c.records)
    };
    wait_for("delivered or dead-lettered", Duration::from_secs(90), || {
        let done = fake.event_count() as i64 + dead() >= truth.ids.len() as i64;
        if !done {
            eprintln!("{} on the hub, {} dead\n{}", fake.event_count(), dead(), status(&h));
        }
        done
    })
    .await;
    wait_for("the hub sink's offset committed", Duration::from_secs(30), || h.backlog("hub") == 0).await;
    daemon.stop().await.expect("clean shutdown");
    let got = by_record(&fake.events());
    assert!(got.values().all(|n| *n == 1), "no duplicates");
    let big = truth.ids.iter().filter(|i| !got.contains_key(*i)).count();
    assert!(
        big > 0 && !got.is_empty(),
        "the scenario has records on both sides of {max} bytes: {big} big, {} small",
        got.len()
    );
    assert_eq!(dead(), big as i64, "every record not on the hub is in the dead-letter table");
    assert!(fake.transfers().iter().all(|t| t.bytes as u64 <= max));
    let listing = auditkeeper::admin::list(&state, &Default::default(), 1000, false).unwrap();
    assert!(listing.contains("does not fit in one Event Hubs message"), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_app_credential_signs_in_with_an_entra_token() {
    let fake = FakeEventHubs::start(1 << 20).await;
    let sink = format!(
        "\n[[sinks]]\ntype = \"eventhubs\"\nname = \"hub\"\nauth = \"tenant\"\ntenant = \"contoso\"\nnamespace = \"{NAMESPACE}\"\nevent_hub = \"audit\"\ncustom_endpoint = \"{}\"\npartitioning = \"tenant\"\n",
        fake.endpoint()
    );
    let h = Harness::new(scenario(800), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let truth = run_until_on_hub(&h, &fake).await;
    let events = fake.events();
    assert_exactly_once(&truth.ids, &by_record(&events));
    assert!(events.iter().all(|e| e.partition_key.as_deref() == Some("contoso")));
    let tokens = fake.tokens();
    assert!(!tokens.is_empty());
    for t in &tokens {
        assert_eq!(t.kind, "jwt", "an Entra token, not a SAS");
        assert_eq!(t.audience, format!("amqps://{NAMESPACE}/audit"));
        assert!(h.sim.tenant.token_valid(&t.token), "the token was issued by the tenant's authority");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_mid_send_delivers_everything_after_restart_with_at_most_a_batch_twice_per_kill() {
    const BATCH: usize = 300;
    let fake = FakeEventHubs::start(1 << 20).await;
    // Slow settlement keeps a send in flight when the kill lands.
    fake.faults(|f| f.settle_delay = Duration::from_millis(40));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("max_message_bytes = 32768\nbatch = {{ max_records = {BATCH} }}");
    let sink = sas_sink(&fake, &connection_file(dir.path()), &extra);
    let h = Harness::new(scenario(6_000), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let truth = h.sim.tenant.truth();
    let mut kills = 0;
    for round in 0..3u64 {
        let before = fake.event_count();
        let daemon = BinaryDaemon::spawn(&h.config, &[]);
        // Kill once this run has delivered some of its own: with slow settlement a send is in flight.
        let progress = 100 + round as usize * 150;
        wait_for("sending", Duration::from_secs(60), || fake.event_count() >= before + progress).await;
        daemon.kill();
        kills += 1;
        assert!(fake.event_count() < truth.ids.len(), "the kill landed before the end");
    }
    let daemon = BinaryDaemon::spawn(&h.config, &[]);
    wait_for("everything on the hub", Duration::from_secs(180), || {
        let got = by_record(&fake.events());
        truth.ids.iter().all(|i| got.contains_key(i))
    })
    .await;
    assert!(daemon.terminate().success(), "graceful shutdown exits 0");
    let got = by_record(&fake.events());
    let duplicates: usize = got.values().map(|n| (*n - 1) as usize).sum();
    assert!(duplicates <= kills * BATCH, "{duplicates} duplicates after {kills} kills: more than one batch per kill");
    assert_eq!(got.len(), truth.ids.len());
    eprintln!("{kills} kills, {duplicates} duplicates, {} records", truth.ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_identity_signs_in_through_the_identity_endpoint() {
    let fake = FakeEventHubs::start(1 << 20).await;
    let client_id = "3f0c2d9e-1b7a-4c55-9e2f-6a1d8b4c7e90";
    let sink = format!(
        "\n[[sinks]]\ntype = \"eventhubs\"\nname = \"hub\"\nauth = \"managed_identity\"\nclient_id = \"{client_id}\"\nnamespace = \"{NAMESPACE}\"\nevent_hub = \"audit\"\ncustom_endpoint = \"{}\"\n",
        fake.endpoint()
    );
    let h = Harness::new(scenario(600), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let truth = h.sim.tenant.truth();
    // As on App Service or Arc: the host names its identity endpoint and secret header in the
    // environment, and azure_identity's ManagedIdentityCredential finds them there.
    let endpoint = format!("https://localhost:{}/msi/token", h.sim.addr.port());
    let header = auditkeeper::simulator::routes::IDENTITY_HEADER_VALUE;
    let env = [("IDENTITY_ENDPOINT", endpoint.as_ref()), ("IDENTITY_HEADER", header.as_ref())];
    let daemon = BinaryDaemon::spawn(&h.config, &env);
    wait_for("hub delivery", Duration::from_secs(90), || fake.event_count() >= truth.ids.len()).await;
    assert!(daemon.terminate().success());
    assert_exactly_once(&truth.ids, &by_record(&fake.events()));
    let asked = h.sim.tenant.stats().managed_identity_requests;
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|a| a == &format!("https://eventhubs.azure.net as {client_id}")), "{asked:?}");
    for t in fake.tokens() {
        assert_eq!(t.kind, "jwt");
        assert!(h.sim.tenant.token_valid(&t.token), "the token came from the identity endpoint");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_over_websockets_reaches_the_hub_through_a_custom_endpoint() {
    let tls = auditkeeper::simulator::tls::generate().unwrap();
    let fake = FakeEventHubs::start_websockets(1 << 20, &tls.cert_pem, &tls.key_pem).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("hub-ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let sink = sas_sink(&fake, &connection_file(dir.path()), "transport = \"websockets\"\npartitioning = \"stream\"")
        .replace(&fake.endpoint(), &format!("amqps://localhost:{}", fake.addr.port()));
    let h = Harness::new(scenario(600), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let truth = h.sim.tenant.truth();
    // The WebSocket client trusts the system's roots; SSL_CERT_FILE adds the test CA to them.
    let daemon = BinaryDaemon::spawn(&h.config, &[("SSL_CERT_FILE", ca.as_os_str())]);
    wait_for("hub delivery", Duration::from_secs(90), || fake.event_count() >= truth.ids.len()).await;
    assert!(daemon.terminate().success());
    assert!(fake.websocket_upgrades() >= 1, "the client came in over a WebSocket");
    let events = fake.events();
    assert_exactly_once(&truth.ids, &by_record(&events));
    for e in &events {
        let key = format!("{}/{}", e.properties["source"], e.properties["stream"]);
        assert_eq!(e.partition_key.as_deref(), Some(key.as_str()), "partitioning = stream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_refusing_messages_as_too_large_gets_smaller_ones_and_loses_nothing() {
    // The link advertises 1 MiB but the hub (behind a proxy, or scaled down to Basic) takes 300 KB.
    let fake = FakeEventHubs::start(1 << 20).await;
    fake.faults(|f| f.refuse_over = 300_000);
    let dir = tempfile::tempdir().unwrap();
    let sink = sas_sink(&fake, &connection_file(dir.path()), "");
    let h = Harness::new(scenario(2_000), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let truth = run_until_on_hub(&h, &fake).await;
    assert!(fake.refused() >= 1, "the hub refused a large message first");
    assert!(fake.transfers().iter().all(|t| t.bytes <= 300_000));
    assert_exactly_once(&truth.ids, &by_record(&fake.events()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_identity_signs_in_with_its_federated_token() {
    let fake = FakeEventHubs::start(1 << 20).await;
    let sink = format!(
        "\n[[sinks]]\ntype = \"eventhubs\"\nname = \"hub\"\nauth = \"workload_identity\"\nnamespace = \"{NAMESPACE}\"\nevent_hub = \"audit\"\ncustom_endpoint = \"{}\"\n",
        fake.endpoint()
    );
    let h = Harness::new(scenario(600), ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    let truth = h.sim.tenant.truth();
    let s = &h.sim.tenant.scenario;
    let token_file = h.dir.path().join("federated-token");
    std::fs::write(&token_file, &s.federated_token).unwrap();
    // What the AKS workload identity webhook injects into the pod.
    let authority = format!("https://localhost:{}", h.sim.addr.port());
    let env = [
        ("AZURE_AUTHORITY_HOST", authority.as_ref()),
        ("AZURE_TENANT_ID", s.tenant_id.as_ref()),
        ("AZURE_CLIENT_ID", s.client_id.as_ref()),
        ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_os_str()),
    ];
    let daemon = BinaryDaemon::spawn(&h.config, &env);
    wait_for("hub delivery", Duration::from_secs(90), || fake.event_count() >= truth.ids.len()).await;
    assert!(daemon.terminate().success());
    assert_exactly_once(&truth.ids, &by_record(&fake.events()));
    for t in fake.tokens() {
        assert_eq!(t.kind, "jwt");
        assert!(h.sim.tenant.token_valid(&t.token), "the token came from the authority, for the federated token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_app_signing_in_with_a_certificate_collects_and_sends_to_the_hub() {
    let pem =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-app-certificate.pem")).unwrap();
    let cert_only = pem[..pem.find("-----BEGIN PRIVATE KEY-----").unwrap()].to_string();
    let fake = FakeEventHubs::start(1 << 20).await;
    let sink = format!(
        "\n[[sinks]]\ntype = \"eventhubs\"\nname = \"hub\"\nauth = \"tenant\"\ntenant = \"contoso\"\nnamespace = \"{NAMESPACE}\"\nevent_hub = \"audit\"\ncustom_endpoint = \"{}\"\n",
        fake.endpoint()
    );
    let scenario = Scenario { history_records: 800, client_certificate_pem: Some(cert_only), ..Scenario::default() };
    let h = Harness::new(scenario, ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() }).await;
    // The app has no secret at all: only the certificate and its key, in a private file.
    let key_file = h.dir.path().join("app.pem");
    std::fs::write(&key_file, &pem).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = std::fs::read_to_string(&h.config).unwrap();
    let line = config.lines().find(|l| l.starts_with("client_secret_file")).unwrap();
    let config = config.replace(line, &format!("client_certificate_file = \"{}\"", key_file.display()));
    std::fs::write(&h.config, config).unwrap();
    std::fs::write(h.dir.path().join("client-secret"), "not-the-secret").unwrap();

    let truth = run_until_on_hub(&h, &fake).await;
    assert_exactly_once(&truth.ids, &by_record(&fake.events()));
    for t in fake.tokens() {
        assert_eq!(t.kind, "jwt");
        assert!(h.sim.tenant.token_valid(&t.token), "issued for the certificate's assertion");
    }
}
