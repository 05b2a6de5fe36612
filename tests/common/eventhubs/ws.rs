//! The server half of AMQP over WebSockets for the fake hub: TLS, the HTTP upgrade to
//! subprotocol `amqp`, and binary messages carrying the AMQP byte stream.

type WsInner = tokio_tungstenite::WebSocketStream<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;

/// The server half of AMQP over WebSockets: binary messages carry the AMQP byte stream.
#[derive(Debug)]
pub(super) struct Wss {
    ws: WsInner,
    pending: Vec<u8>,
    at: usize,
}

impl tokio::io::AsyncRead for Wss {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures::StreamExt;
        use std::task::Poll;
        use tokio_tungstenite::tungstenite::Message as M;
        loop {
            if self.at < self.pending.len() {
                let n = buf.remaining().min(self.pending.len() - self.at);
                let at = self.at;
                buf.put_slice(&self.pending[at..at + n]);
                self.at += n;
                return Poll::Ready(Ok(()));
            }
            match self.ws.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(M::Binary(b)))) => {
                    self.pending = b.to_vec();
                    self.at = 0;
                }
                Poll::Ready(Some(Ok(M::Close(_)))) | Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl tokio::io::AsyncWrite for Wss {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use futures::SinkExt;
        use std::task::Poll;
        match self.ws.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            Poll::Pending => return Poll::Pending,
        }
        let msg = tokio_tungstenite::tungstenite::Message::Binary(buf.to_vec().into());
        match self.ws.start_send_unpin(msg) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(e) => Poll::Ready(Err(std::io::Error::other(e))),
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures::SinkExt;
        self.ws.poll_flush_unpin(cx).map_err(std::io::Error::other)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures::SinkExt;
        self.ws.poll_close_unpin(cx).map_err(std::io::Error::other)
    }
}

pub(super) async fn websocket(tls: tokio_rustls::TlsAcceptor, stream: tokio::net::TcpStream) -> Option<Wss> {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let tls = tls.accept(stream).await.ok()?;
    // The AMQP WebSocket binding names subprotocol "amqp"; echo what the client asked for.
    #[allow(clippy::result_large_err)] // the signature tungstenite asks for
    let answer = |req: &Request, mut resp: Response| {
        if let Some(p) = req.headers().get("sec-websocket-protocol") {
            resp.headers_mut().insert("sec-websocket-protocol", p.clone());
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(tls, answer).await.ok()?;
    Some(Wss { ws, pending: Vec::new(), at: 0 })
}
