//! Connections to the syslog receiver, and the delivery check TCP allows.
//!
//! Stream transports confirm as far as the socket allows: before writing, a peer that closed the
//! connection is noticed and we reconnect instead of writing into it; after writing and flushing,
//! we wait until the kernel reports every byte acknowledged by the receiver's TCP stack (send
//! queue empty, connection not reset). Only then is the batch confirmed. UDP has no such check.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::config::{SyslogSinkSettings, Transport};

// Linux `enum tcp_state` values (include/net/tcp_states.h); libc does not export them.
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

pub struct Connection {
    s: SyslogSinkSettings,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Option<Conn>,
}

impl Connection {
    /// Reads the TLS files now, so a bad one stops the daemon at start, not at the first send.
    pub fn new(s: SyslogSinkSettings) -> Result<Connection, crate::common::tls::TlsError> {
        let tls = if s.transport == Transport::Tls {
            Some(tokio_rustls::TlsConnector::from(Arc::new(s.tls.rustls_config()?)))
        } else {
            None
        };
        Ok(Connection { s, tls, conn: None })
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
                Ok(Conn::Tcp(tcp))
            }
            Transport::Tls => {
                let tcp = tokio::time::timeout(t, TcpStream::connect(&self.s.address)).await.map_err(to)??;
                tcp.set_nodelay(true)?;
                let name = rustls::pki_types::ServerName::try_from(self.s.server_name.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let connector = self.tls.as_ref().expect("tls transport has a connector");
                let tls = tokio::time::timeout(t, connector.connect(name, tcp)).await.map_err(to)??;
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }

    /// Drops a connection the peer has closed, so nothing is written into it.
    fn drop_if_closed(&mut self) {
        let mut buf = [0u8; 512];
        let closed = match &mut self.conn {
            Some(Conn::Tcp(t)) => matches!(t.read(&mut buf).now_or_never(), Some(Ok(0) | Err(_))),
            // Reading through rustls handles session tickets and a close_notify correctly.
            Some(Conn::Tls(t)) => matches!(t.read(&mut buf).now_or_never(), Some(Ok(0) | Err(_))),
            _ => false,
        };
        if closed {
            tracing::info!(address = %self.s.address, "syslog receiver closed the connection; reconnecting");
            self.conn = None;
        }
    }

    /// Sends the frames (stream transports) or messages (UDP, one datagram each) and confirms.
    /// On any error the connection is dropped; the caller resends the whole batch.
    pub async fn send(&mut self, buf: &[u8], messages: &[std::ops::Range<usize>]) -> std::io::Result<()> {
        self.drop_if_closed();
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let timeout = self.s.timeout;
        let r = async {
            match self.conn.as_mut().expect("connected above") {
                Conn::Udp(u) => {
                    for m in messages {
                        u.send(&buf[m.clone()]).await?;
                    }
                    Ok(())
                }
                Conn::Tcp(t) => {
                    tokio::time::timeout(timeout, async {
                        t.write_all(buf).await?;
                        t.flush().await
                    })
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
                    wait_acknowledged(t, timeout).await
                }
                Conn::Tls(t) => {
                    tokio::time::timeout(timeout, async {
                        t.write_all(buf).await?;
                        t.flush().await
                    })
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
                    wait_acknowledged(t.get_ref().0, timeout).await
                }
            }
        }
        .await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    pub async fn close(&mut self) {
        match self.conn.take() {
            Some(Conn::Tcp(mut t)) => {
                let _ = t.shutdown().await;
            }
            Some(Conn::Tls(mut t)) => {
                let _ = t.shutdown().await;
            }
            _ => {}
        }
    }
}

/// Waits until the kernel's send queue is empty (every byte acknowledged by the peer's TCP
/// stack) while the connection is still established, or fails.
async fn wait_acknowledged(t: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    let fd = t.as_raw_fd();
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
