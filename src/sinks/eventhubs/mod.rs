//! The Azure Event Hubs sink: `azure_messaging_eventhubs::ProducerClient` batches, one AMQP
//! message each, with the record's original JSON as the body and the collector's metadata as
//! application properties.
//!
//! INVARIANTS
//! - A forwarder batch is confirmed only when every AMQP message built from it was settled
//!   `Accepted`. `Modified` and `Released` count as not delivered (`outcome`), `Rejected` and
//!   transport errors are retried.
//! - A forwarder batch may become several AMQP messages (one partition key each, each under
//!   the size limit). They are all built before the first is sent, so a record that can never
//!   fit is reported as poison before anything leaves. Each message the hub settled Accepted is
//!   marked in `Accepted`, so delivery's retry leaves those records out and a failure in the
//!   third message does not resend the first two.

pub mod config;
pub mod credential;
pub mod outcome;

use std::collections::HashMap;
use std::time::Duration;

use azure_messaging_eventhubs::error::ErrorKind;
use azure_messaging_eventhubs::models::{AmqpTransport, EventData};
use azure_messaging_eventhubs::{EventDataBatch, EventDataBatchOptions, EventHubsError, ProducerClient, RetryOptions};

use config::{EventHubsSinkSettings, Partitioning};
use credential::Opener;
use outcome::{OutcomeWatch, Unsettled};

use crate::sinks::{Accepted, Batch, BuildContext, BuildError, OutRecord, Sink, SinkError, redact};

/// The Basic tier's limit, the smallest any hub accepts.
const BASIC_MAX_MESSAGE: u64 = 256_000;

pub struct EventHubsSink {
    name: String,
    s: EventHubsSinkSettings,
    opener: Opener,
    client: Option<ProducerClient>,
    watch: OutcomeWatch,
    /// Strings no error may show: the connection string and its key.
    secrets: Vec<String>,
    /// The link's own limit, once it turned out lower than `max_message_bytes`.
    link_limit: Option<u64>,
    /// Set when a failure leaves the connection in doubt (a timeout, a transport error), so
    /// the next attempt opens a fresh one; an outcome the hub settled says the link works.
    doubt: bool,
    /// Namespace and hub named by the connection string, for messages.
    from_conn: (Option<String>, Option<String>),
}

impl EventHubsSink {
    pub fn new(name: &str, s: EventHubsSinkSettings, ctx: &BuildContext) -> Result<EventHubsSink, BuildError> {
        let opener = credential::opener(name, &s.auth, ctx)?;
        Ok(EventHubsSink {
            name: name.to_string(),
            s,
            opener,
            client: None,
            watch: OutcomeWatch::new(),
            secrets: Vec::new(),
            link_limit: None,
            from_conn: (None, None),
            doubt: false,
        })
    }

    fn scrub(&self, m: &str) -> String {
        let m = redact::scrub(m, &self.secrets);
        match &self.opener {
            Opener::Token { tenant: Some(t), .. } => t.scrub(&m),
            _ => m,
        }
    }

    fn hub_label(&self) -> String {
        let ns = self.s.namespace.as_deref().or(self.from_conn.0.as_deref()).unwrap_or("<namespace>");
        let hub = self.s.event_hub.as_deref().or(self.from_conn.1.as_deref()).unwrap_or("<event hub>");
        format!("{ns}/{hub}")
    }

    async fn open(&mut self) -> Result<ProducerClient, SinkError> {
        let mut b = ProducerClient::builder()
            .with_application_id(format!("auditkeeper/{}", env!("CARGO_PKG_VERSION")))
            // The library's own retries cover a blip; the forwarder retries forever after that.
            .with_retry_options(RetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(200),
                max_delay: azure_core::time::Duration::seconds(5),
                max_total_elapsed: azure_core::time::Duration::seconds(20),
                max_retries: 3,
            });
        if self.s.websockets {
            b = b.with_transport(AmqpTransport::WebSocket);
        }
        if let Some(e) = &self.s.custom_endpoint {
            b = b.with_custom_endpoint(e.to_string());
        }
        let hub = self.s.event_hub.clone();
        let conn = match &self.opener {
            Opener::ConnectionString(src) => {
                let (cs, secrets) =
                    credential::connection_string(src).map_err(|e| SinkError::Retryable(e.to_string()))?;
                // Keep the old ones too: a rotated key may still appear in a late error.
                for s in secrets {
                    if !self.secrets.contains(&s) {
                        self.secrets.push(s);
                    }
                }
                self.from_conn = credential::names(&cs);
                Some(cs)
            }
            Opener::Token { .. } => None,
        };
        let fut = async {
            match (&self.opener, conn) {
                (_, Some(cs)) => b.open_with_connection_string(&cs, hub.as_deref()).await,
                (Opener::Token { credential, .. }, None) => {
                    let ns = self.s.namespace.as_deref().unwrap_or_default();
                    b.open(ns, hub.as_deref().unwrap_or_default(), credential.clone()).await
                }
                (Opener::ConnectionString(_), None) => unreachable!("read above"),
            }
        };
        match tokio::time::timeout(self.s.timeout, fut).await {
            Ok(r) => r.map_err(|e| self.classify(&e, "open")),
            Err(_) => {
                Err(SinkError::Retryable(format!("opening {} timed out after {:?}", self.hub_label(), self.s.timeout)))
            }
        }
    }

    /// Maps a library error to what the forwarder should do, in words an operator can act on.
    fn classify(&self, e: &EventHubsError, during: &str) -> SinkError {
        let text = self.scrub(&crate::http::error_chain(e));
        let lower = text.to_ascii_lowercase();
        let hub = self.hub_label();
        if lower.contains("server-busy") || lower.contains("serverbusy") {
            // The service asks for at least a few seconds before the next attempt.
            return SinkError::Throttled {
                message: format!("Event Hubs {hub} is throttling ({during}): {text}"),
                after: Some(Duration::from_secs(4)),
            };
        }
        // The token is put on the `$cbs` node when a link attaches, so a refusal can surface
        // from open, create batch or send alike.
        let auth = ["status code: 401", "status code: 403", "unauthorized", "invalidsignature", "put-token"];
        if auth.iter().any(|k| lower.contains(k)) {
            return SinkError::Retryable(format!(
                "Event Hubs {hub} refused the credential ({}): {text}. Check the SAS policy has Send, or that the identity holds \"Azure Event Hubs Data Sender\" on the hub",
                self.s.auth.describe()
            ));
        }
        SinkError::Retryable(format!("Event Hubs {hub} ({during}): {text}"))
    }

    async fn new_batch<'a>(
        &mut self,
        client: &'a ProducerClient,
        key: &Option<String>,
    ) -> Result<EventDataBatch<'a>, SinkError> {
        let max = self.link_limit.unwrap_or(self.s.max_message_bytes);
        let opts =
            EventDataBatchOptions { partition_key: key.clone(), max_size_in_bytes: Some(max), ..Default::default() };
        match client.create_batch(Some(opts)).await {
            Ok(b) => Ok(b),
            Err(EventHubsError { kind: ErrorKind::InvalidBatchSize { max_allowed, .. } }) if max_allowed > 0 => {
                tracing::warn!(sink = %self.name, configured = max, link = max_allowed,
                    "the hub accepts smaller messages than max_message_bytes (a Basic tier hub?); using the hub's limit");
                self.link_limit = Some(max_allowed);
                let opts = EventDataBatchOptions {
                    partition_key: key.clone(),
                    max_size_in_bytes: Some(max_allowed),
                    ..Default::default()
                };
                client.create_batch(Some(opts)).await.map_err(|e| self.classify(&e, "create batch"))
            }
            Err(e) => {
                // Attaching the link failed (a refused token, a lost connection): reopen, which
                // also re-reads a connection string that may have been rotated.
                self.doubt = true;
                Err(self.classify(&e, "create batch"))
            }
        }
    }

    fn partition_key(&self, r: &OutRecord) -> Option<String> {
        let m = &r.meta;
        match self.s.partitioning {
            Partitioning::None => None,
            Partitioning::Tenant => Some(m.tenant.clone()),
            Partitioning::Stream => Some(format!("{}/{}", m.source, m.name)),
            Partitioning::TenantStream => Some(format!("{}/{}/{}", m.tenant, m.source, m.name)),
        }
    }

    async fn send_inner(
        &mut self,
        client: &ProducerClient,
        batch: &Batch,
        accepted: &mut Accepted,
    ) -> Result<(), SinkError> {
        // Group by partition key, keeping spool order within each key.
        let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        let mut slot: HashMap<Option<String>, usize> = HashMap::new();
        for (i, r) in batch.records.iter().enumerate() {
            let key = self.partition_key(r);
            let g = *slot.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        // Build every message first: a record too large for any message is found before sending.
        let mut planned: Vec<(EventDataBatch<'_>, Vec<usize>)> = Vec::new();
        for (key, members) in groups {
            let mut cur = self.new_batch(client, &key).await?;
            let mut in_cur = Vec::new();
            for i in members {
                let r = &batch.records[i];
                if !cur.try_add_event_data(event(r), None).map_err(|e| self.classify(&e, "add event"))? {
                    if in_cur.is_empty() {
                        return Err(self.oversize(i, r));
                    }
                    planned.push((cur, std::mem::take(&mut in_cur)));
                    cur = self.new_batch(client, &key).await?;
                    if !cur.try_add_event_data(event(r), None).map_err(|e| self.classify(&e, "add event"))? {
                        return Err(self.oversize(i, r));
                    }
                }
                in_cur.push(i);
            }
            if !in_cur.is_empty() {
                planned.push((cur, in_cur));
            }
        }
        for (b, members) in planned {
            let size = b.size();
            let send = tokio::time::timeout(self.s.timeout, client.send_batch(b, None));
            let (result, unsettled) = self.watch.run(send).await;
            match result {
                Err(_) => {
                    self.doubt = true;
                    return Err(SinkError::Retryable(format!(
                        "Event Hubs {} did not settle a {size}-byte message within {:?}",
                        self.hub_label(),
                        self.s.timeout
                    )));
                }
                Ok(Err(e)) => {
                    let e = self.classify(&e, "send");
                    let text = e.to_string().to_ascii_lowercase();
                    // amqp:link:message-size-exceeded, rendered by the library as LinkPayloadSizeExceeded.
                    let too_large = ["message-size-exceeded", "payloadsizeexceeded", "messagesizeexceeded"];
                    if too_large.iter().any(|k| text.contains(k)) {
                        self.shrink_messages();
                    }
                    self.doubt = !text.contains("rejected");
                    return Err(e);
                }
                Ok(Ok(())) => {}
            }
            if let Some(u) = unsettled {
                let how = if u == Unsettled::Released { "released" } else { "modified" };
                return Err(SinkError::Retryable(format!(
                    "Event Hubs {} {how} a message of {} events instead of accepting it; resending",
                    self.hub_label(),
                    members.len()
                )));
            }
            // Settled Accepted: a retry of this batch leaves these records out.
            accepted.mark_all(members);
        }
        Ok(())
    }

    /// The hub refused a message as too large although the link advertised more (a proxy, or a
    /// hub scaled down to Basic): halve the message size, down to the smallest tier's 256 KB, so
    /// the batch is rebuilt in pieces the hub takes instead of being refused forever.
    fn shrink_messages(&mut self) {
        let cur = self.link_limit.unwrap_or(self.s.max_message_bytes);
        let next = (cur / 2).max(BASIC_MAX_MESSAGE).min(cur);
        if next < cur {
            tracing::warn!(sink = %self.name, from = cur, to = next,
                "the hub refused a message as too large; sending smaller messages");
            self.link_limit = Some(next);
        }
    }

    fn oversize(&self, index: usize, r: &OutRecord) -> SinkError {
        let max = self.link_limit.unwrap_or(self.s.max_message_bytes);
        SinkError::Poison {
            index,
            reason: format!(
                "record of {} bytes does not fit in one Event Hubs message (max_message_bytes {max}, including properties and framing)",
                r.raw.len()
            ),
        }
    }
}

/// The record as an Event Hubs event: body = Microsoft's original JSON bytes.
fn event(r: &OutRecord) -> EventData {
    let m = &r.meta;
    let collected = chrono::DateTime::from_timestamp_millis(m.collected_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    EventData::builder()
        .with_body(r.raw())
        .with_content_type("application/json".to_string())
        .with_message_id(r.id().to_string())
        .add_property("tenant".to_string(), m.tenant.as_str())
        .add_property("stream".to_string(), m.name.as_str())
        .add_property("source".to_string(), m.source.as_str())
        .add_property("record_id".to_string(), r.id())
        .add_property("collected_at".to_string(), collected)
        .build()
}

#[async_trait::async_trait]
impl Sink for EventHubsSink {
    async fn send(&mut self, batch: &Batch, accepted: &mut Accepted) -> Result<(), SinkError> {
        let client = match self.client.take() {
            Some(c) => c,
            None => self.open().await?,
        };
        self.doubt = false;
        let r = self.send_inner(&client, batch, accepted).await;
        if self.doubt {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
            });
        } else {
            self.client = Some(client);
        }
        r
    }

    async fn close(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
        }
    }
}
