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
use std::sync::Arc;

use crate::sinks::{Accepted, Batch, OutRecord, Sink, SinkError};
use config::FileSinkSettings;
use writer::StreamFile;

pub use compress::gzip_file;
pub use writer::{EventRange, read_range, write_range};

pub struct FileSink {
    settings: FileSinkSettings,
    files: HashMap<(String, String, String), StreamFile>,
    line: Vec<u8>,
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
        Ok(FileSink { settings, files: HashMap::new(), line: Vec::new(), manifest, retention_checked: None })
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

    fn encode(&mut self, r: &OutRecord) {
        self.line.clear();
        if self.settings.envelope {
            crate::sinks::envelope::write(&mut self.line, r);
        } else {
            self.line.extend_from_slice(r.raw());
        }
        self.line.push(b'\n');
    }
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
        let res: std::io::Result<()> = (|| {
            for r in &batch.records {
                let key = (r.meta.tenant.clone(), r.meta.source.clone(), r.meta.name.clone());
                self.encode(r);
                if !self.files.contains_key(&key) {
                    let f = StreamFile::open(&root, &key, today, archive)?;
                    self.files.insert(key.clone(), f);
                }
                let f = self.files.get_mut(&key).expect("inserted above");
                f.ensure_current(&root, &key, today, rotate, manifest.as_ref())?;
                f.write(&self.line, r.event_time_ms)?;
                if !touched.contains(&key) {
                    touched.push(key);
                }
            }
            // Durable before the forwarder commits its offset.
            for k in &touched {
                if let Some(f) = self.files.get_mut(k) {
                    f.sync()?;
                }
            }
            Ok(())
        })();
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
