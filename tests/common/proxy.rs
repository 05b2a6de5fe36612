//! A small HTTP forward proxy for tests: tunnels each CONNECT to its target and forwards each
//! plain `http://` request (absolute form), counts both per target, and answers 407 when basic
//! credentials are required and wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub struct ConnectProxy {
    pub port: u16,
    /// Tunnels opened, per `host:port`.
    pub tunnels: Arc<Mutex<HashMap<String, u32>>>,
    /// Requests refused with 407.
    pub refused: Arc<Mutex<u32>>,
}

impl ConnectProxy {
    /// `credentials`: the `user:password` a client must present, if any.
    pub async fn start(credentials: Option<&str>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels: Arc<Mutex<HashMap<String, u32>>> = Default::default();
        let refused: Arc<Mutex<u32>> = Default::default();
        use base64::Engine;
        let expected = credentials.map(|c| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c)));
        let (t, r) = (tunnels.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (t, r, expected) = (t.clone(), r.clone(), expected.clone());
                tokio::spawn(async move {
                    let _ = tunnel(client, t, r, expected).await;
                });
            }
        });
        ConnectProxy { port, tunnels, refused }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn tunnels_to(&self, target: &str) -> u32 {
        self.tunnels.lock().unwrap().get(target).copied().unwrap_or(0)
    }
}

async fn tunnel(
    client: TcpStream,
    tunnels: Arc<Mutex<HashMap<String, u32>>>,
    refused: Arc<Mutex<u32>>,
    expected: Option<String>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client);
    let mut first = String::new();
    reader.read_line(&mut first).await?;
    let mut auth = None;
    let mut head = first.clone();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("proxy-authorization")
        {
            auth = Some(v.trim().to_string());
            continue;
        }
        head.push_str(&line);
        if line.trim().is_empty() {
            break;
        }
    }
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
    let plain = target.strip_prefix("http://").map(|rest| rest.split('/').next().unwrap_or("").to_string());
    // What the client sent past the head (a request body) is passed on with it.
    let early = reader.buffer().to_vec();
    let mut client = reader.into_inner();
    if method != "CONNECT" && plain.is_none() {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").await?;
        return Ok(());
    }
    if expected.is_some() && auth != expected {
        *refused.lock().unwrap() += 1;
        client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"t\"\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    if let Some(host) = plain {
        // Origin servers take the absolute form too (RFC 9112 3.2.2): forward as it came.
        let mut upstream = TcpStream::connect(host.replace("localhost", "127.0.0.1")).await?;
        *tunnels.lock().unwrap().entry(host).or_insert(0) += 1;
        upstream.write_all(head.as_bytes()).await?;
        upstream.write_all(&early).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // The simulator answers as localhost; this proxy reaches it on loopback.
    let upstream_addr = target.replace("localhost", "127.0.0.1");
    let mut upstream = TcpStream::connect(&upstream_addr).await?;
    *tunnels.lock().unwrap().entry(target).or_insert(0) += 1;
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
