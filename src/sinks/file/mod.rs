//! The file sink: JSON Lines per tenant, source and stream, rotated by size and UTC day,
//! closed files gzip-compressed. Data is fsynced before a batch is confirmed.
//!
//! Layout: `{path}/{tenant}/{source}/{stream}/{YYYY-MM-DD}-{NNN}.jsonl[.gz]`.

mod compress;
pub mod read;
mod writer;

use std::collections::HashMap;

use crate::config::validate::FileSinkSettings;
use crate::sinks::{Batch, OutRecord, Sink, SinkError};
use writer::StreamFile;

pub use compress::gzip_file;

pub struct FileSink {
    settings: FileSinkSettings,
    files: HashMap<(String, String, String), StreamFile>,
    line: Vec<u8>,
}

impl FileSink {
    pub fn new(settings: FileSinkSettings) -> std::io::Result<FileSink> {
        // A directory that is unusable right now is not fatal: polling goes on, records wait in
        // the spool, and every send retries until the directory is back.
        match std::fs::create_dir_all(&settings.path) {
            // Files left open by an earlier run from previous days are closed: compress them now.
            Ok(()) => compress::sweep_stale(&settings.path, chrono::Utc::now().date_naive()),
            Err(e) => {
                tracing::error!(path = %settings.path.display(), error = %e, "file sink directory unusable; records will wait in the spool")
            }
        }
        Ok(FileSink { settings, files: HashMap::new(), line: Vec::new() })
    }

    fn encode(&mut self, r: &OutRecord) {
        self.line.clear();
        if self.settings.envelope {
            let collected = chrono::DateTime::from_timestamp_millis(r.meta.collected_at_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
            self.line.extend_from_slice(b"{\"tenant\":");
            self.line.extend_from_slice(q(&r.meta.tenant).as_bytes());
            self.line.extend_from_slice(b",\"source\":");
            self.line.extend_from_slice(q(&r.meta.source).as_bytes());
            self.line.extend_from_slice(b",\"stream\":");
            self.line.extend_from_slice(q(&r.meta.name).as_bytes());
            self.line.extend_from_slice(b",\"collected_at\":");
            self.line.extend_from_slice(q(&collected).as_bytes());
            self.line.extend_from_slice(b",\"record\":");
            self.line.extend_from_slice(r.raw());
            self.line.push(b'}');
        } else {
            self.line.extend_from_slice(r.raw());
        }
        self.line.push(b'\n');
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn send(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let today = chrono::Utc::now().date_naive();
        let rotate = self.settings.rotate_bytes;
        let root = self.settings.path.clone();
        let mut touched: Vec<(String, String, String)> = Vec::new();
        let res: std::io::Result<()> = (|| {
            for r in &batch.records {
                let key = (r.meta.tenant.clone(), r.meta.source.clone(), r.meta.name.clone());
                self.encode(r);
                if !self.files.contains_key(&key) {
                    let f = StreamFile::open(&root, &key, today)?;
                    self.files.insert(key.clone(), f);
                }
                let f = self.files.get_mut(&key).expect("inserted above");
                f.ensure_current(&root, &key, today, rotate)?;
                f.write(&self.line)?;
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
