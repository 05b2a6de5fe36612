//! Connections to the syslog receiver, and the delivery check TCP allows.
//!
//! Stream transports confirm as far as the socket allows: after writing and flushing, we wait
//! until the kernel reports every byte acknowledged by the receiver's TCP stack (send queue
//! empty, connection not reset). Only then is the batch confirmed. A watcher task reads each
//! stream connection, so the moment the receiver closes it is known; a closed connection is
//! never written into, and what it confirmed just before it closed is sent again (`resend`).
//! UDP has no such check.

use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::config::{SyslogSinkSettings, Transport};
use super::resend::Resend;

// Linux `enum tcp_state` values (include/net/tcp_states.h); libc does not export them.
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;

type Writer = Pin<Box<dyn AsyncWrite + Send + Sync>>;

/// One TCP or TLS connection: its write side, its socket, and when the receiver closed it.
struct StreamConn {
    writer: Writer,
    fd: RawFd,
    closed: Arc<OnceLock<Instant>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl StreamConn {
    fn new<S: AsyncRead + AsyncWrite + Send + Sync + 'static>(stream: S, fd: RawFd) -> StreamConn {
        let (mut reader, writer) = tokio::io::split(stream);
        let closed = Arc::new(OnceLock::new());
        let seen = closed.clone();
        let watcher = tokio::spawn(async move {
            // A syslog receiver sends nothing; end of stream or an error (a reset) is its close.
            // Reading through rustls also handles session tickets and a close_notify.
            let mut buf = [0u8; 512];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = seen.set(Instant::now());
        });
        StreamConn { writer: Box::pin(writer), fd, closed, watcher }
    }

    fn closed_at(&self) -> Option<Instant> {
        self.closed.get().copied()
    }
}

impl Drop for StreamConn {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

enum Conn {
    Udp(UdpSocket),
    Stream(StreamConn),
}

/// What one `send` carried: the batch, and frames resent ahead of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub resent_records: usize,
}

pub struct Connection {
    s: SyslogSinkSettings,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Option<Conn>,
    resend: Resend,
}

impl Connection {
    /// Reads the TLS files now, so a bad one stops the daemon at start, not at the first send.
    pub fn new(s: SyslogSinkSettings) -> Result<Connection, crate::common::tls::TlsError> {
        let tls = if s.transport == Transport::Tls {
            Some(tokio_rustls::TlsConnector::from(Arc::new(s.tls.rustls_config()?)))
        } else {
            None
        };
        let resend = Resend::new(s.resend_window, s.resend_max_bytes);
        Ok(Connection { s, tls, conn: None, resend })
    }

    pub fn is_datagram(&self) -> bool {
        self.s.transport == Transport::Udp
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        let t = self.s.timeout;
        let to = |e: tokio::time::error::Elapsed| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
        match self.s.transport {
            Transport::Udp => {
                let peer = tokio::net::lookup_host(&self.s.address)
                    .await?
                    .next()
                    .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
                let local = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let sock = UdpSocket::bind(local).await?;
                sock.connect(peer).await?;
                Ok(Conn::Udp(sock))
            }
            Transport::Tcp => {
                let tcp = tokio::time::timeout(t, TcpStream::connect(&self.s.address)).await.map_err(to)??;
                tcp.set_nodelay(true)?;
                let fd = tcp.as_raw_fd();
                Ok(Conn::Stream(StreamConn::new(tcp, fd)))
            }
            Transport::Tls => {
                let tcp = tokio::time::timeout(t, TcpStream::connect(&self.s.address)).await.map_err(to)??;
                tcp.set_nodelay(true)?;
                let fd = tcp.as_raw_fd();
                let name = rustls::pki_types::ServerName::try_from(self.s.server_name.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let connector = self.tls.as_ref().expect("tls transport has a connector");
                let tls = tokio::time::timeout(t, connector.connect(name, tcp)).await.map_err(to)??;
                Ok(Conn::Stream(StreamConn::new(tls, fd)))
            }
        }
    }

    /// Drops a connection the receiver has closed, so nothing is written into it, and marks
    /// what it confirmed just before for resending.
    fn drop_if_closed(&mut self) {
        if let Some(Conn::Stream(c)) = &self.conn
            && let Some(at) = c.closed_at()
        {
            tracing::info!(address = %self.s.address, "syslog receiver closed the connection; reconnecting");
            self.resend.connection_lost(at);
            self.conn = None;
        }
    }

    /// Sends the frames (stream transports) or messages (UDP, one datagram each) and confirms.
    /// Over a new stream connection, frames a lost one may have dropped go first. On any
    /// error the connection is dropped; the caller resends the whole batch.
    pub async fn send(&mut self, buf: &[u8], messages: &[std::ops::Range<usize>]) -> std::io::Result<Sent> {
        self.drop_if_closed();
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let timeout = self.s.timeout;
        let pending = self.resend.pending();
        let r = match self.conn.as_mut().expect("connected above") {
            Conn::Udp(u) => {
                for m in messages {
                    if let Err(e) = u.send(&buf[m.clone()]).await {
                        self.conn = None;
                        return Err(e);
                    }
                }
                return Ok(Sent::default());
            }
            Conn::Stream(c) => {
                let w = async {
                    if !pending.bytes.is_empty() {
                        c.writer.write_all(&pending.bytes).await?;
                    }
                    c.writer.write_all(buf).await?;
                    c.writer.flush().await
                };
                match tokio::time::timeout(timeout, w).await {
                    Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")),
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(())) => wait_acknowledged(c.fd, timeout).await,
                }
            }
        };
        let now = Instant::now();
        match r {
            Ok(()) => {
                let resent_records = self.resend.pending_delivered(now);
                if !messages.is_empty() {
                    self.resend.confirmed(buf, messages.len(), now);
                }
                if resent_records > 0 {
                    tracing::info!(address = %self.s.address, records = resent_records,
                        "resent what the receiver confirmed just before it closed the connection");
                }
                Ok(Sent { resent_records })
            }
            Err(e) => {
                self.resend.connection_lost(now);
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Ends the connection. Frames still to be resent are sent first, within the timeout; a
    /// stop that cannot says how many records the receiver may be missing. Returns what it
    /// resent.
    pub async fn close(&mut self) -> Sent {
        self.drop_if_closed();
        let mut sent = Sent::default();
        let records = self.resend.pending().records;
        if records > 0 {
            match self.send(&[], &[]).await {
                Ok(s) => sent = s,
                Err(e) => tracing::warn!(address = %self.s.address, records, error = %e,
                    "stopping before the syslog receiver took again what it may have dropped when it closed the connection"),
            }
        }
        if let Some(Conn::Stream(mut c)) = self.conn.take() {
            let _ = c.writer.shutdown().await;
        }
        sent
    }
}

/// Waits until the kernel's send queue is empty (every byte acknowledged by the peer's TCP
/// stack) while the connection is still established, or fails.
async fn wait_acknowledged(fd: RawFd, timeout: Duration) -> std::io::Result<()> {
    let start = Instant::now();
    loop {
        let (state, queued) = tcp_state(fd)?;
        // ESTABLISHED, or CLOSE_WAIT: the peer closed after acknowledging what we sent.
        let open = state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT;
        if !open {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection closed before the receiver acknowledged the batch",
            ));
        }
        if queued == 0 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("receiver did not acknowledge {queued} bytes within {timeout:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// (TCP state, bytes not yet acknowledged) from `TCP_INFO` and `TIOCOUTQ`.
fn tcp_state(fd: std::os::fd::RawFd) -> std::io::Result<(u8, i32)> {
    // SAFETY: plain getsockopt/ioctl on a socket we own, into correctly sized buffers.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        if libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len)
            != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let mut queued: libc::c_int = 0;
        if libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((info.tcpi_state, queued))
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
