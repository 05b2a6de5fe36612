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
use fe2o3_amqp::types::messaging::{Body, Message, Modified};
use fe2o3_amqp::types::primitives::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

mod messages;
mod ws;

use messages::{management, put_token, store, with_correlation};
use ws::websocket;

pub const NAMESPACE: &str = "fake-ns.servicebus.windows.net";
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
    /// Refuse any transfer larger than this many bytes with `amqp:link:message-size-exceeded`,
    /// whatever the link advertised (0: no such limit).
    pub refuse_over: usize,
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
    upgrades: usize,
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
        Self::listen(addr, max_message_size, None).await
    }

    /// AMQP over secure WebSockets, as the service offers on 443: TLS with the given localhost
    /// certificate and an HTTP upgrade to subprotocol `amqp` on any path.
    pub async fn start_websockets(max_message_size: u64, cert_pem: &str, key_pem: &str) -> FakeEventHubs {
        use rustls::pki_types::pem::PemObject;
        let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
        Self::listen("127.0.0.1:0", max_message_size, Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await
    }

    async fn listen(addr: &str, max: u64, wss: Option<tokio_rustls::TlsAcceptor>) -> FakeEventHubs {
        let listener = TcpListener::bind(addr).await.expect("bind fake event hubs");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(serve(listener, state.clone(), max, wss));
        FakeEventHubs { addr, state, task }
    }

    /// Clients that opened a WebSocket (for tests of the WebSockets transport).
    pub fn websocket_upgrades(&self) -> usize {
        self.state.lock().unwrap().upgrades
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

async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    max_message_size: u64,
    wss: Option<tokio_rustls::TlsAcceptor>,
) {
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
        let (acceptor, state, wss) = (acceptor.clone(), state.clone(), wss.clone());
        tokio::spawn(async move {
            let conn = match wss {
                None => acceptor.accept(stream).await.ok(),
                Some(tls) => match websocket(tls, stream).await {
                    Some(ws) => {
                        state.lock().unwrap().upgrades += 1;
                        acceptor.accept(ws).await.ok()
                    }
                    None => None,
                },
            };
            if let Some(mut conn) = conn {
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
        let size = messages::encoded_size(&message);
        let (fault, delay) = {
            let mut s = state.lock().unwrap();
            let f = &mut s.faults;
            let too_big = f.refuse_over > 0 && size > f.refuse_over;
            let fault = too_big
                .then_some("too big")
                .or_else(|| take(&mut f.drop_connection, "drop"))
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
            Some("too big") => {
                state.lock().unwrap().refused += 1;
                let e = definitions::Error::new(
                    fe2o3_amqp::types::definitions::LinkError::MessageSizeExceeded,
                    Some(format!("The received message (delivery-id:0, size:{size} bytes) exceeds the limit")),
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
