//! A fake Azure Event Hubs namespace: a real AMQP 1.0 peer on 127.0.0.1 (fe2o3-amqp's acceptor)
//! that the real `azure_messaging_eventhubs::ProducerClient` talks to unchanged.
//!
//! It answers what the service answers (`$cbs` put-token, `$management` READ, sender attaches
//! with a `max-message-size`, detaches), decodes every batch transfer (message format 0x80013700,
//! one Data section per event) into the events the hub would store, and injects the faults the
//! real service produces: a refused token, rejected, released or modified deliveries, a dropped
//! TCP connection and slow settlement. A delivery counts as stored only once it is accepted.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SaslAnonymousMechanism, SessionAcceptor,
};
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::definitions::{self, AmqpError};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::message::__private::Serializable;
use fe2o3_amqp::types::messaging::message::DecodeIntoMessage;
use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Body, Message, MessageId, Modified, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Timestamp, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const NAMESPACE: &str = "fake-ns.servicebus.windows.net";
const BATCH_FORMAT: u32 = 0x8001_3700;
const PEER_LATENCY: Duration = Duration::from_millis(2);

/// One event as the hub stored it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub body: Vec<u8>,
    pub properties: BTreeMap<String, String>,
    pub partition_key: Option<String>,
    pub content_type: Option<String>,
    pub message_id: Option<String>,
}

/// One accepted transfer: its encoded size and what it carried.
#[derive(Debug, Clone)]
pub struct StoredTransfer {
    pub bytes: usize,
    pub events: usize,
    pub batch_format: bool,
    pub target: String,
}

/// A `put-token` the hub was offered.
#[derive(Debug, Clone)]
pub struct OfferedToken {
    pub kind: String,
    pub audience: String,
    pub token: String,
    pub accepted: bool,
}

/// Faults to inject. Counters apply to the next N hub deliveries.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Status for put-token replies; 0 means 202 (accepted).
    pub put_token_status: u16,
    pub reject: usize,
    pub release: usize,
    pub modify: usize,
    /// Close the TCP connection instead of settling the next N deliveries.
    pub drop_connection: usize,
    /// Wait this long before settling each delivery.
    pub settle_delay: Duration,
    /// Refuse deliveries with `com.microsoft:server-busy` (throttling) for the next N.
    pub server_busy: usize,
    /// Count events without decoding or keeping them (the benchmark: the fake shares the CPU).
    pub count_only: bool,
}

#[derive(Default)]
struct State {
    faults: Faults,
    events: Vec<StoredEvent>,
    transfers: Vec<StoredTransfer>,
    tokens: Vec<OfferedToken>,
    refused: usize,
    counted: usize,
    wire: Option<Arc<std::sync::atomic::AtomicU64>>,
    connections: HashMap<u64, RawFd>,
    next_conn: u64,
}

pub struct FakeEventHubs {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEventHubs {
    fn drop(&mut self) {
        self.task.abort();
        self.drop_connections();
    }
}

impl FakeEventHubs {
    /// Listens on 127.0.0.1; hub links advertise `max_message_size` (1 MB on Standard).
    pub async fn start(max_message_size: u64) -> FakeEventHubs {
        Self::start_on("127.0.0.1:0", max_message_size).await
    }

    pub async fn start_on(addr: &str, max_message_size: u64) -> FakeEventHubs {
        let listener = TcpListener::bind(addr).await.expect("bind fake event hubs");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(serve(listener, state.clone(), max_message_size));
        FakeEventHubs { addr, state, task }
    }

    /// What `custom_endpoint` must say to reach this peer.
    pub fn endpoint(&self) -> String {
        format!("amqp://{}", self.addr)
    }

    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.lock().unwrap().faults);
    }

    /// Adds the encoded size of every accepted transfer to `counter` (the benchmark's wire count).
    pub fn count_bytes_into(&self, counter: Arc<std::sync::atomic::AtomicU64>) {
        self.state.lock().unwrap().wire = Some(counter);
    }

    pub fn events(&self) -> Vec<StoredEvent> {
        self.state.lock().unwrap().events.clone()
    }

    /// Events stored (or, with `count_only`, counted).
    pub fn event_count(&self) -> usize {
        self.state.lock().unwrap().counted
    }

    pub fn transfers(&self) -> Vec<StoredTransfer> {
        self.state.lock().unwrap().transfers.clone()
    }

    pub fn tokens(&self) -> Vec<OfferedToken> {
        self.state.lock().unwrap().tokens.clone()
    }

    /// Deliveries that were rejected, released, modified or cut off by a dropped connection.
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }

    /// Cuts every open TCP connection, as a load balancer or network failure would.
    pub fn drop_connections(&self) {
        let mut s = self.state.lock().unwrap();
        for (_, fd) in s.connections.drain() {
            // SAFETY: the fd belongs to a TcpStream owned by a live connection task; shutdown
            // only ends the stream, it does not close or reuse the descriptor.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, max_message_size: u64) {
    let acceptor = Arc::new(
        ConnectionAcceptor::builder()
            .container_id("fake-eventhubs")
            .sasl_acceptor(SaslAnonymousMechanism::new())
            .build(),
    );
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let id = {
            let mut s = state.lock().unwrap();
            s.next_conn += 1;
            let id = s.next_conn;
            s.connections.insert(id, fd);
            id
        };
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            if let Ok(mut conn) = acceptor.accept(stream).await {
                let sessions = SessionAcceptor::new();
                while let Ok(session) = sessions.accept(&mut conn).await {
                    tokio::spawn(serve_session(session, state.clone(), max_message_size, id));
                }
                let _ = conn.close().await;
            }
            state.lock().unwrap().connections.remove(&id);
        });
    }
}

/// Reply links by node (`$cbs`, `$management`): a request on a node's receiving link is
/// answered on the sending link the client attached for it.
type Replies = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message<Body<Value>>>>>>;

async fn serve_session(mut session: ListenerSessionHandle, state: Arc<Mutex<State>>, max: u64, conn: u64) {
    let links = LinkAcceptor::builder().max_message_size(max).build();
    let replies: Replies = Arc::default();
    while let Ok(link) = links.accept(&mut session).await {
        match link {
            LinkEndpoint::Sender(sender) => {
                let node = sender.source().as_ref().and_then(|s| s.address.clone()).unwrap_or_default();
                let (tx, rx) = mpsc::unbounded_channel();
                replies.lock().unwrap().insert(node, tx);
                tokio::spawn(reply_link(sender, rx));
            }
            LinkEndpoint::Receiver(receiver) => {
                let target = receiver.target().as_ref().and_then(|t| t.address.clone()).unwrap_or_default();
                tokio::spawn(receive_link(receiver, target, state.clone(), replies.clone(), conn));
            }
        }
    }
    let _ = session.end().await;
}

async fn reply_link(mut sender: Sender, mut rx: mpsc::UnboundedReceiver<Message<Body<Value>>>) {
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => if sender.send(m).await.is_err() { break },
                None => break,
            },
            _ = sender.on_detach() => break,
        }
    }
    let _ = sender.close().await;
}

async fn receive_link(mut receiver: Receiver, target: String, state: Arc<Mutex<State>>, replies: Replies, conn: u64) {
    // Generous credit, as the service grants, so the sender never waits for a flow frame.
    if receiver.set_credit(100_000).await.is_err() {
        return;
    }
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(_) => break,
        };
        let format = *delivery.message_format();
        let (delivery, message) = delivery.into_parts();
        if target == "$cbs" || target == "$management" {
            let _ = receiver.accept(delivery.clone()).await;
            let reply = if target == "$cbs" { put_token(&state, &message) } else { management(&message) };
            let reply = with_correlation(reply, &message);
            // The client attaches its reply receiver alongside the request sender; wait for it.
            for _ in 0..100 {
                if let Some(tx) = replies.lock().unwrap().get(&target) {
                    let _ = tx.send(reply);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        }
        let (fault, delay) = {
            let mut s = state.lock().unwrap();
            let f = &mut s.faults;
            let fault = take(&mut f.drop_connection, "drop")
                .or_else(|| take(&mut f.server_busy, "busy"))
                .or_else(|| take(&mut f.reject, "reject"))
                .or_else(|| take(&mut f.release, "release"))
                .or_else(|| take(&mut f.modify, "modify"));
            (fault, f.settle_delay)
        };
        // Never settle faster than a network round trip. fe2o3-amqp 0.16.2's sender records a
        // delivery as unsettled only after handing the transfer to its session, so a peer that
        // answers within microseconds (only possible on loopback) can have its disposition
        // dropped and the send then waits until the sink's timeout.
        tokio::time::sleep(delay.max(PEER_LATENCY)).await;
        match fault {
            Some("drop") => {
                let mut s = state.lock().unwrap();
                s.refused += 1;
                if let Some(fd) = s.connections.remove(&conn) {
                    // SAFETY: see `drop_connections`.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
                break;
            }
            Some("busy") => {
                state.lock().unwrap().refused += 1;
                let e = definitions::Error::new(
                    AmqpError::ResourceLimitExceeded,
                    Some("com.microsoft:server-busy: The request was terminated because the namespace is being throttled. TrackingId:fake".into()),
                    None,
                );
                let _ = receiver.reject(delivery.clone(), e).await;
            }
            Some("reject") => {
                state.lock().unwrap().refused += 1;
                let e = definitions::Error::new(AmqpError::InternalError, Some("fake: delivery rejected".into()), None);
                let _ = receiver.reject(delivery.clone(), e).await;
            }
            Some("release") => {
                state.lock().unwrap().refused += 1;
                let _ = receiver.release(delivery.clone()).await;
            }
            Some("modify") => {
                state.lock().unwrap().refused += 1;
                let _ = receiver
                    .modify(
                        delivery.clone(),
                        Modified { delivery_failed: Some(true), undeliverable_here: None, message_annotations: None },
                    )
                    .await;
            }
            _ => {
                // Store before settling: once the client sees Accepted, the events are durable.
                let count_only = state.lock().unwrap().faults.count_only;
                let stored = store(&message, format, &target, count_only);
                {
                    let mut s = state.lock().unwrap();
                    s.counted += stored.0.events;
                    if let Some(w) = &s.wire {
                        w.fetch_add(stored.0.bytes as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    s.transfers.push(stored.0);
                    s.events.extend(stored.1);
                }
                if receiver.accept(delivery.clone()).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = receiver.close().await;
}

fn take(n: &mut usize, what: &'static str) -> Option<&'static str> {
    if *n > 0 {
        *n -= 1;
        Some(what)
    } else {
        None
    }
}

fn store(
    message: &Message<Body<Value>>,
    format: Option<u32>,
    target: &str,
    count_only: bool,
) -> (StoredTransfer, Vec<StoredEvent>) {
    let bytes = serde_amqp::serialized_size(&Serializable(message)).unwrap_or(0);
    let batch_format = format == Some(BATCH_FORMAT);
    if count_only {
        let n = match &message.body {
            Body::Data(sections) if batch_format => sections.len(),
            _ => 1,
        };
        return (StoredTransfer { bytes, events: n, batch_format, target: target.to_string() }, Vec::new());
    }
    let events: Vec<StoredEvent> = match (&message.body, batch_format) {
        (Body::Data(sections), true) => sections
            .iter()
            .map(|d| {
                let inner = Body::<Value>::decode_message_from_reader(serde_amqp::read::SliceReader::new(&d.0))
                    .expect("a batch section is an encoded AMQP message");
                event(&inner)
            })
            .collect(),
        _ => vec![event(message)],
    };
    let t = StoredTransfer { bytes, events: events.len(), batch_format, target: target.to_string() };
    (t, events)
}

fn event(m: &Message<Body<Value>>) -> StoredEvent {
    let body = match &m.body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.iter().copied()).collect(),
        other => format!("{other:?}").into_bytes(),
    };
    let properties = m
        .application_properties
        .as_ref()
        .map(|p| p.0.iter().map(|(k, v)| (k.clone(), simple_to_string(v))).collect())
        .unwrap_or_default();
    let partition_key = m.message_annotations.as_ref().and_then(|a| {
        a.0.iter().find_map(|(k, v)| match (k, v) {
            (OwnedKey::Symbol(s), Value::String(v)) if s.0 == "x-opt-partition-key" => Some(v.clone()),
            _ => None,
        })
    });
    let props = m.properties.as_ref();
    StoredEvent {
        body,
        properties,
        partition_key,
        content_type: props.and_then(|p| p.content_type.as_ref()).map(|c| c.0.clone()),
        message_id: props.and_then(|p| p.message_id.as_ref()).map(message_id_string),
    }
}

fn message_id_string(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn simple_to_string(v: &SimpleValue) -> String {
    match v {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.0.clone(),
        SimpleValue::Timestamp(t) => format!("timestamp:{}", t.milliseconds()),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn app_prop<'a>(m: &'a Message<Body<Value>>, key: &str) -> Option<&'a SimpleValue> {
    m.application_properties.as_ref().and_then(|p| p.0.get(key))
}

fn put_token(state: &Arc<Mutex<State>>, m: &Message<Body<Value>>) -> Message<Body<Value>> {
    let text = |k: &str| app_prop(m, k).map(simple_to_string).unwrap_or_default();
    let token = match &m.body {
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.clone(),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    };
    let mut s = state.lock().unwrap();
    let status = match s.faults.put_token_status {
        0 => 202,
        n => n,
    };
    s.tokens.push(OfferedToken { kind: text("type"), audience: text("name"), token, accepted: status == 202 });
    let description = if status == 202 { "Accepted" } else { "InvalidSignature: The token has an invalid signature." };
    Message::builder()
        .application_properties(
            ApplicationProperties::builder()
                .insert("status-code", SimpleValue::Int(status as i32))
                .insert("status-description", SimpleValue::String(description.into()))
                .build(),
        )
        .body(Body::Value(AmqpValue(Value::Null)))
        .build()
}

fn management(m: &Message<Body<Value>>) -> Message<Body<Value>> {
    let name = app_prop(m, "name").map(simple_to_string).unwrap_or_default();
    let mut map = fe2o3_amqp::types::primitives::OrderedMap::new();
    map.insert(Value::String("name".into()), Value::String(name));
    map.insert(Value::String("created_at".into()), Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_000)));
    map.insert(Value::String("partition_count".into()), Value::Int(4));
    let ids = fe2o3_amqp::types::primitives::Array(vec![
        Value::String("0".into()),
        Value::String("1".into()),
        Value::String("2".into()),
        Value::String("3".into()),
    ]);
    map.insert(Value::String("partition_ids".into()), Value::Array(ids));
    Message::builder()
        .application_properties(
            ApplicationProperties::builder()
                .insert("status-code", SimpleValue::Int(200))
                .insert("status-description", SimpleValue::String("OK".into()))
                .build(),
        )
        .body(Body::Value(AmqpValue(Value::Map(map))))
        .build()
}

fn with_correlation(mut reply: Message<Body<Value>>, request: &Message<Body<Value>>) -> Message<Body<Value>> {
    let id = request.properties.as_ref().and_then(|p| p.message_id.clone());
    reply.properties = Some(Properties { correlation_id: id, ..Properties::default() });
    reply
}
