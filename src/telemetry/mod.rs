//! Logs, metrics and health: `logging` (text or JSON lines), `metrics` (every metric name and its
//! help, once), `events` (typed events: one log line and its metrics each), `server` (the
//! `/metrics`, `/healthz` and `/readyz` endpoints).

pub mod events;
pub mod logging;
pub mod metrics;
pub mod server;

pub fn init_logging(format: &str, level: &str) {
    logging::init(format, level);
}
