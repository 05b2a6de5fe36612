//! Log lines on stderr: text or JSON, with ANSI colours only on a terminal. Under systemd
//! (`JOURNAL_STREAM` set) text lines carry no timestamp, since journald adds its own; JSON is
//! one object per line for container log shippers.

use std::io::IsTerminal;

/// How lines are written, decided from the config and the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub json: bool,
    pub ansi: bool,
    pub timestamps: bool,
}

impl Style {
    pub fn detect(format: &str) -> Style {
        Style::from(format, std::io::stderr().is_terminal(), std::env::var_os("JOURNAL_STREAM").is_some())
    }

    pub fn from(format: &str, terminal: bool, journald: bool) -> Style {
        let json = format == "json";
        Style { json, ansi: terminal && !json, timestamps: json || !journald }
    }
}

pub fn init(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDITKEEPER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let style = Style::detect(format);
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(style.ansi);
    let _ = match (style.json, style.timestamps) {
        (true, _) => b.json().try_init(),
        (false, true) => b.try_init(),
        (false, false) => b.without_time().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_and_no_timestamps_for_journald() {
        assert_eq!(Style::from("text", true, false), Style { json: false, ansi: true, timestamps: true });
        assert_eq!(Style::from("text", false, false), Style { json: false, ansi: false, timestamps: true });
        assert_eq!(Style::from("text", false, true), Style { json: false, ansi: false, timestamps: false });
        assert_eq!(Style::from("json", true, true), Style { json: true, ansi: false, timestamps: true });
    }
}
