//! `type = "file"` and `type = "archive"`: where JSON Lines go, how they rotate, and (archive)
//! how long sealed days are kept.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::common::Issues;
use crate::sinks::common::BatchDefaults;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub rotate_bytes: Option<u64>,
    #[serde(default)]
    pub envelope: bool,
    /// Archive only: delete whole days older than this many days (recorded in the manifest).
    pub retention_days: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct FileSinkSettings {
    pub path: PathBuf,
    pub rotate_bytes: u64,
    pub envelope: bool,
    /// Archive mode: a hash-chained manifest entry per closed file.
    pub archive: bool,
    pub retention_days: Option<u32>,
}

/// A partial batch waits up to 5 s (while pages keep coming; see the forwarder): each batch
/// syncs every stream file it touched, and on a tenant trickling small blobs into five streams,
/// a sync of each file every second was about a third of the daemon's system time. Records
/// still reach the file seconds after Microsoft, which publishes them minutes to hours late.
pub const BATCH: BatchDefaults =
    BatchDefaults { records: 5000, bytes: 16 << 20, hard_bytes: 1 << 30, linger: Duration::from_secs(5) };

pub fn validate(is: &mut Issues, prefix: &str, f: &FileSinkConfig, archive: bool) -> Option<FileSinkSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    let path = is.required(&f.path, p("path"));
    let rotate_bytes = f.rotate_bytes.unwrap_or(256 << 20);
    if rotate_bytes < (1 << 20) {
        is.add(p("rotate_bytes"), "must be at least 1MiB");
    }
    match f.retention_days {
        Some(_) if !archive => {
            is.add(p("retention_days"), "only an archive sink (type = \"archive\") deletes old days");
        }
        Some(0) => is.add(p("retention_days"), "must be at least 1 day"),
        Some(d) if d > 36_500 => is.add(p("retention_days"), "must be at most 36500 days"),
        _ => {}
    }
    Some(FileSinkSettings {
        path: path?,
        rotate_bytes,
        envelope: f.envelope,
        archive,
        retention_days: f.retention_days,
    })
}

impl FileSinkSettings {
    /// The environment check: the directory is writable or can be created.
    pub fn check(&self, is: &mut Issues, prefix: &str) {
        if let Err(e) = crate::common::dirs::check_writable(&self.path) {
            is.add(format!("{prefix}.path"), e.to_string());
        }
    }
}
