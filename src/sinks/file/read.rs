//! Reading a file sink's output back (plain and gzip files): used by `demo`, tests and the benchmark.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Every line under `root`, file by file in name order.
///
/// Safe while the sink runs: a closed file being compressed exists for a moment as both
/// `X.jsonl` and the finished `X.jsonl.gz`, so the `.gz` wins; a file that vanishes mid-scan
/// (compression just finished) restarts the scan.
pub fn read_lines(root: &Path) -> std::io::Result<Vec<String>> {
    let mut attempts = 0;
    loop {
        match read_once(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 20 => attempts += 1,
            other => return other,
        }
    }
}

fn read_once(root: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    let names: std::collections::HashSet<PathBuf> = files.iter().cloned().collect();
    let mut out = Vec::new();
    for f in files {
        let name = f.to_string_lossy().to_string();
        let reader: Box<dyn Read> = if name.ends_with(".jsonl.gz") {
            Box::new(flate2::read::GzDecoder::new(std::fs::File::open(&f)?))
        } else if name.ends_with(".jsonl") && !names.contains(&PathBuf::from(format!("{name}.gz"))) {
            Box::new(std::fs::File::open(&f)?)
        } else {
            continue;
        };
        let mut text = String::new();
        BufReader::new(reader).read_to_string(&mut text)?;
        // A line without its newline is still being written by the sink: not delivered yet.
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        out.extend(complete.lines().map(str::to_string));
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// The `Id` of a delivered line (plain record or envelope).
pub fn record_id(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let rec = v.get("record").unwrap_or(&v);
    rec.get("Id").and_then(|i| i.as_str()).map(str::to_string)
}
