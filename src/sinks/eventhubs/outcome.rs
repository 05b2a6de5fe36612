//! Seeing the AMQP outcomes that `ProducerClient::send_batch` hides.
//!
//! azure_messaging_eventhubs 0.16 returns `Ok(())` when the hub settles a batch as `Modified`
//! or `Released`, and only logs a warning ("… not durably accepted"). Neither outcome means the
//! hub stored the events, so treating that `Ok` as delivered would lose them. The outcome is not
//! reachable through the public API, so the send runs under a tracing dispatcher that forwards
//! everything to the daemon's own subscriber and, on the way, notices that one warning and flags
//! the task that is sending.
//!
//! INVARIANT: a send whose warning was seen is reported as not delivered, even though the
//! library said `Ok`. The unit test below pins the texts; `tests/eventhubs_sink.rs` has the real
//! library meet a peer that releases and modifies deliveries, so an upgrade that changes the
//! texts fails there.

use std::cell::Cell;
use std::future::Future;

use tracing::instrument::WithSubscriber;
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Dispatch, Event, Metadata, span};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsettled {
    Modified,
    Released,
}

tokio::task_local! {
    static SEEN: Cell<Option<Unsettled>>;
}

/// A dispatcher that wraps whatever dispatcher was the default when the sink was built.
#[derive(Clone)]
pub struct OutcomeWatch {
    dispatch: Dispatch,
}

impl OutcomeWatch {
    pub fn new() -> OutcomeWatch {
        let outer = tracing::dispatcher::get_default(|d| d.clone());
        OutcomeWatch { dispatch: Dispatch::new(Watch { outer }) }
    }

    /// Runs `fut` (one `send_batch`) and reports a hidden `Modified`/`Released` outcome.
    pub async fn run<F: Future>(&self, fut: F) -> (F::Output, Option<Unsettled>) {
        SEEN.scope(Cell::new(None), async {
            let out = fut.with_subscriber(self.dispatch.clone()).await;
            (out, SEEN.with(|c| c.get()))
        })
        .await
    }
}

impl Default for OutcomeWatch {
    fn default() -> Self {
        Self::new()
    }
}

struct Watch {
    outer: Dispatch,
}

fn is_outcome_callsite(m: &Metadata<'_>) -> bool {
    *m.level() == tracing::Level::WARN && m.target().starts_with("azure_messaging_eventhubs") && m.is_event()
}

/// Pulls the `message` field out of an event.
struct MessageText(String);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

fn classify(text: &str) -> Option<Unsettled> {
    if !text.contains("not durably accepted") {
        return None;
    }
    if text.contains("released") {
        Some(Unsettled::Released)
    } else if text.contains("modified") {
        Some(Unsettled::Modified)
    } else {
        None
    }
}

impl Subscriber for Watch {
    fn register_callsite(&self, m: &'static Metadata<'static>) -> Interest {
        if is_outcome_callsite(m) { Interest::always() } else { self.outer.register_callsite(m) }
    }
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        is_outcome_callsite(m) || self.outer.enabled(m)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // The outer dispatcher's hint is not readable from here; `None` only costs a cached
        // interest lookup per disabled callsite.
        None
    }
    fn new_span(&self, a: &span::Attributes<'_>) -> span::Id {
        self.outer.new_span(a)
    }
    fn record(&self, s: &span::Id, v: &span::Record<'_>) {
        self.outer.record(s, v)
    }
    fn record_follows_from(&self, s: &span::Id, f: &span::Id) {
        self.outer.record_follows_from(s, f)
    }
    fn event(&self, e: &Event<'_>) {
        if is_outcome_callsite(e.metadata()) {
            let mut text = MessageText(String::new());
            e.record(&mut text);
            if let Some(u) = classify(&text.0) {
                let _ = SEEN.try_with(|c| c.set(Some(u)));
            }
            if !self.outer.enabled(e.metadata()) {
                return;
            }
        }
        self.outer.event(e)
    }
    fn enter(&self, s: &span::Id) {
        self.outer.enter(s)
    }
    fn exit(&self, s: &span::Id) {
        self.outer.exit(s)
    }
    fn clone_span(&self, s: &span::Id) -> span::Id {
        self.outer.clone_span(s)
    }
    fn try_close(&self, s: span::Id) -> bool {
        self.outer.try_close(s)
    }
    fn current_span(&self) -> tracing_core::span::Current {
        self.outer.current_span()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn released_and_modified_warnings_are_seen_and_others_are_not() {
        let w = OutcomeWatch::new();
        // The exact texts azure_messaging_eventhubs 0.16 logs from send_batch.
        let (_, seen) = w
            .run(async {
                tracing::warn!(target: "azure_messaging_eventhubs::producer", path = "amqps://x/hub",
                    "Batch was released by the Event Hub; not durably accepted.");
            })
            .await;
        assert_eq!(seen, Some(Unsettled::Released));
        let (_, seen) = w
            .run(async {
                tracing::warn!(target: "azure_messaging_eventhubs::producer", modification = "x",
                    "Batch was modified by the Event Hub; not durably accepted.");
            })
            .await;
        assert_eq!(seen, Some(Unsettled::Modified));
        let (_, seen) = w
            .run(async {
                tracing::warn!(target: "azure_messaging_eventhubs::producer", "Batch was rejected by the Event Hub.");
                tracing::warn!(target: "elsewhere", "Batch was released by the Event Hub; not durably accepted.");
            })
            .await;
        assert_eq!(seen, None);
    }
}
