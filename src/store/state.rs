//! A stream's state as the driver sets it and `status` shows it. Stored as a name, a detail and
//! (for `throttled`) the instant it ends.

use std::fmt;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StreamState {
    /// Registered, first cycle not finished yet.
    #[default]
    Starting,
    Running,
    /// The last cycle did not finish (the reason is shown); the next one retries.
    Retrying(String),
    /// Nothing to collect yet for a known reason (a new subscription can take 12 hours).
    WarmingUp(String),
    /// The tenant lacks a licence or the app a permission; checked again later.
    Unavailable(String),
    /// Microsoft asked us to wait; polling resumes at `until_ms`.
    Throttled {
        until_ms: i64,
        why: String,
    },
    /// Retrying cannot fix it right now; tried again later. Other streams go on.
    Failed(String),
    Stopped(String),
    /// The tenant is no longer configured; its state is kept until `forget-tenant`.
    Removed(String),
}

impl StreamState {
    pub fn name(&self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Running => "running",
            StreamState::Retrying(_) => "retrying",
            StreamState::WarmingUp(_) => "warming_up",
            StreamState::Unavailable(_) => "unavailable",
            StreamState::Throttled { .. } => "throttled",
            StreamState::Failed(_) => "failed",
            StreamState::Stopped(_) => "stopped",
            StreamState::Removed(_) => "removed",
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            StreamState::Starting | StreamState::Running => None,
            StreamState::WarmingUp(d)
            | StreamState::Retrying(d)
            | StreamState::Unavailable(d)
            | StreamState::Failed(d)
            | StreamState::Stopped(d)
            | StreamState::Removed(d)
            | StreamState::Throttled { why: d, .. } => Some(d),
        }
    }

    pub fn until_ms(&self) -> Option<i64> {
        match self {
            StreamState::Throttled { until_ms, .. } => Some(*until_ms),
            _ => None,
        }
    }

    /// Reads a stored state back; an unknown name (a newer build's) shows as it was written.
    pub fn from_row(name: &str, detail: Option<String>, until_ms: Option<i64>) -> StreamState {
        let d = detail.unwrap_or_default();
        match name {
            "starting" => StreamState::Starting,
            "running" => StreamState::Running,
            "retrying" => StreamState::Retrying(d),
            "warming_up" => StreamState::WarmingUp(d),
            "unavailable" => StreamState::Unavailable(d),
            "throttled" => StreamState::Throttled { until_ms: until_ms.unwrap_or(0), why: d },
            "failed" => StreamState::Failed(d),
            "stopped" => StreamState::Stopped(d),
            "removed" => StreamState::Removed(d),
            other => StreamState::Failed(format!("{other}: {d}")),
        }
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamState::Throttled { until_ms, why } => {
                let until = chrono::DateTime::from_timestamp_millis(*until_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                write!(f, "throttled until {until}: {why}")
            }
            s => match s.detail() {
                Some(d) if !d.is_empty() => write!(f, "{}: {d}", s.name()),
                _ => write!(f, "{}", s.name()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_the_round_trip_through_the_table() {
        for s in [
            StreamState::Starting,
            StreamState::Running,
            StreamState::Retrying("HTTP 503".into()),
            StreamState::WarmingUp("new subscription".into()),
            StreamState::Unavailable("needs P1".into()),
            StreamState::Throttled { until_ms: 1_790_000_000_000, why: "AF429".into() },
            StreamState::Failed("AF20010".into()),
            StreamState::Stopped("shut down".into()),
            StreamState::Removed("not in the configuration".into()),
        ] {
            let back = StreamState::from_row(s.name(), s.detail().map(str::to_string), s.until_ms());
            assert_eq!(back, s);
        }
        let t = StreamState::Throttled { until_ms: 1_790_000_000_000, why: "AF429".into() };
        assert_eq!(t.to_string(), "throttled until 2026-09-21T14:13:20Z: AF429");
    }
}
