//! The report as text: a table per section that a person reads at a glance, then what needs a
//! closer look (errors, lost ranges, dead letters), and throttled mailboxes last.

use std::fmt::Write;

use super::Report;

fn dur(secs: Option<i64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 0 => format!("-{}", humantime::format_duration(std::time::Duration::from_secs((-s) as u64))),
        Some(s) => {
            // Whole minutes are enough at a glance.
            let s = if s >= 3600 { s - s % 60 } else { s };
            humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string()
        }
    }
}

/// Pads `cells` into columns under `head`.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let mut l = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(out, &head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        line(out, r);
    }
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    if let Some(reason) = &r.polling_paused {
        let _ = writeln!(out, "!! POLLING PAUSED: {reason}\n");
    }
    for w in &r.warnings {
        let _ = writeln!(out, "!! {w}\n");
    }
    let _ = writeln!(out, "streams:");
    let rows: Vec<Vec<String>> = r
        .streams
        .iter()
        .map(|s| {
            vec![
                s.tenant.clone(),
                s.stream.clone(),
                s.state.to_string(),
                dur(s.lag_seconds),
                dur(s.headroom_seconds),
                s.records.to_string(),
                if s.last_error.is_some() { "yes, below".into() } else { "-".into() },
            ]
        })
        .collect();
    table(&mut out, &["TENANT", "STREAM", "STATE", "LAG", "HEADROOM", "RECORDS", "ERROR"], &rows);
    for s in &r.streams {
        let mut lines = Vec::new();
        if let Some(d) = &s.state_detail {
            match &s.throttled_until {
                Some(u) => lines.push(format!("[{}] until {u}: {d}", s.state)),
                None => lines.push(format!("[{}] {d}", s.state)),
            }
        }
        for g in &s.lost_ranges {
            lines.push(format!(
                "LOST RANGE: {} to {}: the collector was behind for longer than Microsoft keeps data; records there may be lost",
                g.from, g.to
            ));
        }
        if let (Some(e), Some(at)) = (&s.last_error, &s.last_error_at) {
            lines.push(format!("last error: {e} (at {at})"));
        }
        if let Some(b) = &s.blobs
            && (b.expired > 0 || b.refused > 0 || b.pending > 0)
        {
            let refused = if b.refused > 0 {
                format!(", {} REFUSED (over the size or compression cap)", b.refused)
            } else {
                String::new()
            };
            lines.push(format!(
                "blobs: {} fetched, {} pending, {} EXPIRED before fetch{refused}",
                b.fetched, b.pending, b.expired
            ));
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "\n  {}/{}  [{}]", s.tenant, s.stream, s.state);
            for l in lines {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    let _ = writeln!(out, "\nspool: {} records, {} bytes in {} rows", r.spool.records, r.spool.bytes, r.spool.rows);
    let _ = writeln!(out, "\nsinks:");
    let rows: Vec<Vec<String>> = r
        .sinks
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.backlog.to_string(),
                dur(s.oldest_undelivered_seconds),
                s.delivered.to_string(),
                s.dead_letters.to_string(),
                if s.last_error.is_some() { "yes, below".into() } else { "-".into() },
            ]
        })
        .collect();
    table(&mut out, &["SINK", "BACKLOG", "OLDEST", "DELIVERED", "DEAD LETTERS", "ERROR"], &rows);
    for s in &r.sinks {
        let mut lines = Vec::new();
        if !s.configured {
            lines.push(format!(
                "NO LONGER CONFIGURED: its {} undelivered record(s) stay in the spool; `auditkeeper forget-sink {}` releases them",
                s.backlog, s.name
            ));
        }
        if let (Some(e), Some(at)) = (&s.last_error, &s.last_error_at) {
            lines.push(format!("last error: {e} (at {at})"));
        }
        if s.dead_letters > 0 {
            let pending = if s.dead_letters_retry_pending > 0 {
                format!(", {} queued for retry", s.dead_letters_retry_pending)
            } else {
                String::new()
            };
            lines.push(format!(
                "DEAD LETTERS: {} record(s) refused by the receiver{pending} (auditkeeper dead-letter list --sink {})",
                s.dead_letters, s.name
            ));
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "\n  {}", s.name);
            for l in lines {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    if !r.throttled_mailboxes.is_empty() {
        let _ = writeln!(
            out,
            "\nTHROTTLED MAILBOXES: Exchange did not audit Bind access for 24 hours after each; assume every item in them was read"
        );
        let rows: Vec<Vec<String>> = r
            .throttled_mailboxes
            .iter()
            .map(|m| vec![m.tenant.clone(), m.mailbox.clone(), m.first.clone(), m.last.clone(), m.records.to_string()])
            .collect();
        table(&mut out, &["TENANT", "MAILBOX", "FIRST", "LAST", "RECORDS"], &rows);
    }
    if !r.backfills.is_empty() {
        let _ = writeln!(out, "\nBACKFILL JOBS (audit log query API; `auditkeeper backfill --cancel N` stops one)");
        let rows: Vec<Vec<String>> = r
            .backfills
            .iter()
            .map(|b| {
                vec![
                    b.id.to_string(),
                    b.tenant.clone(),
                    format!("{} .. {}", b.since, b.until),
                    b.state.clone(),
                    format!("{}/{}", b.windows_done, b.windows_total),
                    b.windows_running.to_string(),
                    b.windows_failed.to_string(),
                    b.records.to_string(),
                    format!("{:.0}", b.records_per_second),
                    dur(b.eta_seconds),
                ]
            })
            .collect();
        table(
            &mut out,
            &["JOB", "TENANT", "PERIOD", "STATE", "WINDOWS", "RUNNING", "FAILED", "RECORDS", "REC/S", "ETA"],
            &rows,
        );
        for b in r.backfills.iter().filter(|b| b.windows_failed > 0 || b.state == "active") {
            if let Some(d) = &b.last_detail {
                let _ = writeln!(
                    out,
                    "  job {}: {}{d}",
                    b.id,
                    if b.windows_failed > 0 { "WINDOWS FAILED; last: " } else { "last: " }
                );
            }
        }
    }
    out
}
