//! The file sink: JSON Lines per tenant, source and stream, rotated by size and UTC day,
//! closed files gzip-compressed. Data is fsynced before a batch is confirmed.
//!
//! Layout: `{path}/{tenant}/{source}/{stream}/{YYYY-MM-DD}-{NNN}.jsonl[.gz]`.
//!
//! As an archive (`type = "archive"`), every closed file is also sealed into a hash-chained
//! manifest (`manifest`), and whole days older than `retention_days` are deleted, with the
//! deletion recorded in the chain. Days are UTC collection days: a closed day's files never
//! change again, which is what makes them sealable; each manifest entry carries the first and
//! last event time of its records for searching by event time.

mod compress;
pub mod config;
pub mod manifest;
pub mod read;
mod writer;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use crate::sinks::{Accepted, Batch, OutRecord, Sink, SinkError};
use config::FileSinkSettings;
use writer::StreamFile;

pub use compress::gzip_file;
pub use writer::{EventRange, read_range, write_range};

pub struct FileSink {
    settings: FileSinkSettings,
    files: HashMap<(String, String, String), StreamFile>,
    manifest: Option<Arc<manifest::Manifest>>,
    retention_checked: Option<chrono::NaiveDate>,
}

impl FileSink {
    pub fn new(settings: FileSinkSettings) -> std::io::Result<FileSink> {
        // A directory that is unusable right now is not fatal: polling goes on, records wait in
        // the spool, and every send retries until the directory is back.
        let mut manifest = None;
        match crate::common::dirs::create_private(&settings.path) {
            Ok(()) => {
                if settings.archive {
                    let m = Arc::new(manifest::Manifest::open(&settings.path)?);
                    // Files compressed but not sealed when an earlier run stopped.
                    m.seal_unlisted();
                    manifest = Some(m);
                }
                // Files left open by an earlier run from previous days are closed: compress them now.
                compress::sweep_stale(&settings.path, chrono::Utc::now().date_naive(), manifest.clone())
            }
            Err(e) => {
                tracing::error!(path = %settings.path.display(), error = %e, "file sink directory unusable; records will wait in the spool")
            }
        }
        Ok(FileSink { settings, files: HashMap::new(), manifest, retention_checked: None })
    }

    /// Once per UTC day, in the background: delete sealed days older than `retention_days`.
    fn retention(&mut self, today: chrono::NaiveDate) {
        let (Some(m), Some(days)) = (&self.manifest, self.settings.retention_days) else {
            return;
        };
        if self.retention_checked == Some(today) {
            return;
        }
        self.retention_checked = Some(today);
        let (m, cutoff) = (m.clone(), today - chrono::Duration::days(days as i64));
        std::thread::spawn(move || match m.apply_retention(cutoff, days) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(files = n, %cutoff, "archive retention deleted old files and recorded it in the manifest")
            }
            Err(e) => tracing::error!(error = %e, "archive retention failed; retried tomorrow or at restart"),
        });
    }
}

/// One record as the line it is written as, appended to `line`.
fn encode(envelope: bool, r: &OutRecord, line: &mut Vec<u8>) {
    if envelope {
        crate::sinks::envelope::write(line, r);
    } else {
        line.extend_from_slice(r.raw());
    }
    line.push(b'\n');
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn send(&mut self, batch: &Batch, _: &mut Accepted) -> Result<(), SinkError> {
        let today = chrono::Utc::now().date_naive();
        self.retention(today);
        let manifest = self.manifest.clone();
        let rotate = self.settings.rotate_bytes;
        let root = self.settings.path.clone();
        let archive = self.settings.archive;
        let mut touched: Vec<(String, String, String)> = Vec::new();
        let envelope = self.settings.envelope;
        let files = &mut self.files;
        let res: std::io::Result<()> = off_worker(|| {
            // The records of one spool row share their `meta`, so they go to one file: it is
            // looked up once per row. Cloning and hashing its key for every record was about
            // 1% of the daemon's CPU on small blobs.
            let mut rest = &batch.records[..];
            while let Some(first) = rest.first() {
                let run = rest.iter().take_while(|r| Arc::ptr_eq(&r.meta, &first.meta)).count();
                let (row, next) = rest.split_at(run);
                rest = next;
                let key = (first.meta.tenant.clone(), first.meta.source.clone(), first.meta.name.clone());
                let f = match files.entry(key.clone()) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => v.insert(StreamFile::open(&root, &key, today, archive)?),
                };
                for r in row {
                    f.ensure_current(&root, &key, today, rotate, manifest.as_ref())?;
                    f.write(r.event_time_ms, |line| encode(envelope, r, line))?;
                }
                if !touched.contains(&key) {
                    touched.push(key);
                }
            }
            // Durable before the forwarder commits its offset.
            for k in &touched {
                if let Some(f) = files.get_mut(k) {
                    f.sync()?;
                }
            }
            Ok(())
        });
        if let Err(e) = res {
            // Drop every handle: the next attempt reopens from the paths and trims any torn line.
            self.files.clear();
            return Err(SinkError::Retryable(format!("file sink {}: {e}", root.display())));
        }
        Ok(())
    }

    async fn close(&mut self) {
        for (_, mut f) in self.files.drain() {
            let _ = f.sync();
        }
    }
}

/// Runs the writes and syncs of a batch outside the async workers' turn: a sync can take long
/// on a busy disk, and a daemon of few tenants has a single worker (`cli::daemon_runtime`),
/// whose timers and connections would wait for it. On a current-thread runtime (unit tests)
/// it runs in place, as `block_in_place` is not allowed there.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sinks::RowMeta;

    fn row(name: &str, ids: &[&str]) -> Vec<OutRecord> {
        let meta = Arc::new(RowMeta {
            tenant: "t".into(),
            source: "management".into(),
            name: name.into(),
            collected_at_ms: 0,
        });
        ids.iter()
            .map(|id| {
                let text = format!(r#"{{"Id":"{id}"}}"#);
                let data = Arc::new(text.clone().into_bytes());
                OutRecord {
                    meta: meta.clone(),
                    data,
                    id: 7..7 + id.len(),
                    raw: 0..text.len(),
                    event_time_ms: 0,
                    envelope: None,
                }
            })
            .collect()
    }

    /// A daemon of few tenants has one async worker: a batch whose write or sync is stuck
    /// leaves it free, so a timer on it still fires. Run in place, the write would hold the
    /// worker and the timer would not fire until it ends.
    #[test]
    fn a_stuck_write_leaves_the_only_worker_free() {
        use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let ticks = Arc::new(AtomicU32::new(0));
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    t.fetch_add(1, Relaxed);
                }
            });
            let (started_tx, started) = std::sync::mpsc::channel::<()>();
            let (release, released) = std::sync::mpsc::channel::<()>();
            let stuck = tokio::spawn(async move {
                off_worker(|| {
                    started_tx.send(()).unwrap();
                    released.recv().unwrap()
                })
            });
            started.recv_timeout(std::time::Duration::from_secs(10)).expect("the write started");
            let at_start = ticks.load(Relaxed);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while ticks.load(Relaxed) < at_start + 3 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let during = ticks.load(Relaxed) - at_start;
            release.send(()).unwrap();
            stuck.await.unwrap();
            ticker.abort();
            assert!(during >= 3, "the worker's timer fired {during} times while a write was stuck");
        });
    }

    /// Rows of two streams interleaved, and two rows of one stream with their own `meta`: each
    /// record lands in its own stream's file, in batch order.
    #[tokio::test]
    async fn each_record_of_interleaved_rows_lands_in_its_streams_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let settings = FileSinkSettings {
            path: dir.path().to_path_buf(),
            rotate_bytes: 1 << 30,
            envelope: false,
            archive: false,
            retention_days: None,
        };
        let mut sink = FileSink::new(settings).unwrap();
        let mut records = row("A", &["a1", "a2"]);
        records.extend(row("B", &["b1"]));
        records.extend(row("A", &["a3"]));
        records.extend(row("B", &["b2", "b3"]));
        let batch = Batch { bytes: 0, records };
        sink.send(&batch, &mut Accepted::default()).await.unwrap();
        let ids = |name: &str| -> Vec<String> {
            let stream = dir.path().join("t/management").join(name);
            let file = std::fs::read_dir(&stream).unwrap().next().unwrap().unwrap().path();
            std::fs::read_to_string(file).unwrap().lines().map(|l| l[7..l.len() - 2].to_string()).collect()
        };
        assert_eq!(ids("A"), ["a1", "a2", "a3"]);
        assert_eq!(ids("B"), ["b1", "b2", "b3"]);
    }
}
