//! Sink benchmark (not a timed test): a spool pre-filled with 1.5 KB records drains through one
//! forwarder into a receiver on loopback, for
//! 1. the HTTP sink (generic preset, NDJSON, gzip) into a local HTTP server;
//! 2. the syslog sink over TLS (RFC 5425 octet counting) into a local TLS reader;
//! 3. the Event Hubs sink (the real `ProducerClient`, 1 MB messages) into the test tree's fake
//!    Event Hubs, a real AMQP 1.0 peer that decodes every batch.
//!
//! Size: AK_BENCH_SINK_RECORDS (default 200000). Runs: AK_BENCH_RUNS (default 3); the median is
//! printed. The last line is
//! `http_gzip_records_per_sec=N syslog_tls_records_per_sec=M eventhubs_records_per_sec=E`.

mod common;
#[path = "../tests/common/eventhubs/mod.rs"]
mod fake_eventhubs;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auditkeeper::pipeline::Pipeline;
use auditkeeper::pipeline::forwarder::Forwarder;
use auditkeeper::store::Store;

fn env_n(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// Fills a spool with `n` records; returns their total JSON bytes.
fn prefill(store: &Store, n: u64) -> u64 {
    store.register_stream("contoso/management/Audit.Exchange", "contoso", "management", "Audit.Exchange").unwrap();
    let now = chrono::Utc::now();
    let per_page = 500u64;
    let mut total = 0;
    for p in 0..n / per_page {
        let page = common::exchange_page("contoso", p, per_page, now.timestamp_millis());
        total += page.body.len() as u64;
        store.ingest(&page, 8 * 86_400_000, 0).unwrap();
    }
    total
}

fn config(dir: &std::path::Path, sink: &str) -> auditkeeper::config::Settings {
    let text = format!(
        r#"state_dir = "{}"
[[tenants]]
name = "contoso"
tenant_id = "7b3f5c1e-9a2d-4e8f-b6c4-2d1e0f9a8b7c"
client_id = "5a1c7e3b-2f4d-4b6a-9c8e-1d0f2e3a4b5c"
client_secret_env = "UNUSED"
{sink}
"#,
        dir.join("state").display()
    );
    let raw: auditkeeper::config::RawConfig = auditkeeper::config::from_toml_str(&text).unwrap();
    auditkeeper::config::validate(&raw).unwrap().0
}

/// Drains the pre-filled spool through the configured sink; returns (records/s, JSON MB/s).
async fn drain(n: u64, sink: &str, wire: Arc<AtomicU64>) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let settings = config(dir.path(), sink);
    let store = Arc::new(Store::open(&settings.state_dir).unwrap());
    let bytes = tokio::task::block_in_place(|| prefill(&store, n));
    let name = settings.sinks[0].name().to_string();
    store.ensure_sinks(std::slice::from_ref(&name)).unwrap();
    let pipeline = Pipeline::new(store.clone(), settings.spool.clone());
    let built = auditkeeper::sinks::build(&settings.sinks[0], &Default::default()).unwrap();
    let shutdown = auditkeeper::pipeline::shutdown::Shutdown::new();
    wire.store(0, Ordering::Relaxed);
    let t = Instant::now();
    let task = tokio::spawn(Forwarder::new(pipeline, built).run(shutdown.clone()));
    loop {
        let b = store.backlogs().unwrap();
        if b.iter().all(|x| x.records == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    shutdown.begin_drain(Duration::ZERO);
    let _ = task.await;
    println!(
        "  {n} records ({:.0} B avg JSON) in {secs:.2}s = {:.0} records/s, {:.1} MB/s JSON, {:.1} MB/s on the wire",
        bytes as f64 / n as f64,
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        wire.load(Ordering::Relaxed) as f64 / secs / 1e6
    );
    (n as f64 / secs, bytes as f64 / secs / 1e6)
}

async fn http_receiver(wire: Arc<AtomicU64>) -> String {
    use axum::body::Bytes;
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let wire = wire.clone();
        async move {
            wire.fetch_add(body.len() as u64, Ordering::Relaxed);
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    // Without TCP_NODELAY the small responses meet delayed ACKs and every request waits ~40 ms.
    use axum::serve::ListenerExt;
    let l = l.tap_io(|t| {
        let _ = t.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

/// A TLS listener that reads and counts everything (as a syslog receiver's socket would).
async fn tls_receiver(wire: Arc<AtomicU64>, dir: &std::path::Path) -> (u16, std::path::PathBuf) {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::AsyncReadExt;
    let tls = auditkeeper::simulator::tls::generate().unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, wire) = (acceptor.clone(), wire.clone());
            tokio::spawn(async move {
                let Ok(mut t) = acceptor.accept(s).await else { return };
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = t.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    wire.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (port, ca)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    auditkeeper::http::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = env_n("AK_BENCH_SINK_RECORDS", 200_000);
    let runs = env_n("AK_BENCH_RUNS", 3) as usize;
    let dir = tempfile::tempdir().unwrap();
    let (http, tls, eh) = rt.block_on(async {
        let wire = Arc::new(AtomicU64::new(0));
        let url = http_receiver(wire.clone()).await;
        let sink = format!("[[sinks]]\ntype = \"http\"\nname = \"h\"\npreset = \"generic\"\nurl = \"{url}\"\n{}", std::env::var("AK_BENCH_HTTP_EXTRA").unwrap_or_default().replace(";", "\n"));
        println!("http sink, generic preset, NDJSON + gzip, into a local HTTP server:");
        let mut http = Vec::new();
        for _ in 0..runs {
            http.push(drain(n, &sink, wire.clone()).await.0);
        }
        let (port, ca) = tls_receiver(wire.clone(), dir.path()).await;
        let sink = format!(
            "[[sinks]]\ntype = \"syslog\"\nname = \"s\"\ntransport = \"tls\"\naddress = \"127.0.0.1:{port}\"\nca_file = \"{}\"\nserver_name = \"localhost\"\n",
            ca.display()
        );
        println!("syslog sink, RFC 5425 TLS, into a local TLS reader:");
        let mut tls = Vec::new();
        for _ in 0..runs {
            tls.push(drain(n, &sink, wire.clone()).await.0);
        }
        let hub = fake_eventhubs::FakeEventHubs::start(1 << 20).await;
        hub.faults(|f| f.count_only = true);
        hub.count_bytes_into(wire.clone());
        let cs = dir.path().join("eh-connection");
        std::fs::write(
            &cs,
            format!(
                "Endpoint=sb://{}/;SharedAccessKeyName=send;SharedAccessKey=YmVuY2hrZXk=;EntityPath=audit",
                fake_eventhubs::NAMESPACE
            ),
        )
        .unwrap();
        let sink = format!(
            "[[sinks]]\ntype = \"eventhubs\"\nname = \"e\"\nconnection_string_file = \"{}\"\ncustom_endpoint = \"{}\"\n",
            cs.display(),
            hub.endpoint()
        );
        println!("eventhubs sink, ProducerClient batches of up to 1 MB, into the fake Event Hubs (AMQP 1.0):");
        let mut eh = Vec::new();
        for _ in 0..runs {
            eh.push(drain(n, &sink, wire.clone()).await.0);
            let t = hub.transfers();
            println!(
                "    {} events stored so far in {} messages, largest {} bytes",
                hub.event_count(),
                t.len(),
                t.iter().map(|x| x.bytes).max().unwrap_or(0)
            );
        }
        (median(http), median(tls), median(eh))
    });
    println!(
        "http_gzip_records_per_sec={http:.0} syslog_tls_records_per_sec={tls:.0} eventhubs_records_per_sec={eh:.0}"
    );
}
