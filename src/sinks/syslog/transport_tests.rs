//! A receiver that closes with confirmed bytes unread: they reach its next connection, once.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::*;
use crate::common::Issues;
use crate::sinks::syslog::config::{SyslogSinkConfig, validate};

fn settings(port: u16, window: &str) -> SyslogSinkSettings {
    let text = format!("address = \"127.0.0.1:{port}\"\ntransport = \"tcp\"\nresend_window = \"{window}\"\n");
    let raw: SyslogSinkConfig = crate::config::from_toml_str(&text).unwrap();
    let mut is = Issues::new();
    let s = validate(&mut is, "sinks[0]", &raw).unwrap();
    assert!(is.is_empty(), "{:?}", is.errors);
    s
}

fn frame(text: &str) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let f = format!("{} {text}", text.len()).into_bytes();
    let r = f.len() - text.len()..f.len();
    (f, vec![r])
}

/// Sends like the forwarder does: again until it is confirmed.
async fn deliver(c: &mut Connection, text: &str) -> Sent {
    let (f, r) = frame(text);
    for _ in 0..50 {
        if let Ok(s) = c.send(&f, &r).await {
            return s;
        }
    }
    panic!("{text} was never confirmed");
}

async fn read_all(l: &TcpListener) -> String {
    let (mut s, _) = l.accept().await.unwrap();
    let mut v = Vec::new();
    s.read_to_end(&mut v).await.unwrap();
    String::from_utf8(v).unwrap()
}

async fn wait_closed(c: &Connection) {
    let start = std::time::Instant::now();
    while !matches!(&c.conn, Some(Conn::Stream(s)) if s.closed_at().is_some()) {
        assert!(start.elapsed() < Duration::from_secs(10), "the watcher sees the receiver's close");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn what_a_receiver_drops_unread_when_it_closes_is_sent_again_on_the_next_connection() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = Connection::new(settings(l.local_addr().unwrap().port(), "10s")).unwrap();
    // The receiver's kernel acknowledges "one" and "two", but the receiver never reads them.
    let accept = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        (l, s)
    });
    assert_eq!(deliver(&mut c, "one").await, Sent::default());
    assert_eq!(deliver(&mut c, "two").await, Sent::default());
    let (l, unread) = accept.await.unwrap();
    drop(unread);
    wait_closed(&c).await;
    let reader = tokio::spawn(async move { read_all(&l).await });
    assert_eq!(deliver(&mut c, "three").await, Sent { resent_records: 2 });
    c.close().await;
    assert_eq!(reader.await.unwrap(), "3 one3 two5 three", "each once, in order, on the new connection");
}

#[tokio::test]
async fn a_receiver_that_closes_an_idle_connection_gets_nothing_twice() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = Connection::new(settings(l.local_addr().unwrap().port(), "50ms")).unwrap();
    let first = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).await.unwrap();
        // Idle well past the window, then an idle timeout closes it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(s);
        (l, b)
    });
    deliver(&mut c, "one").await;
    let (l, b) = first.await.unwrap();
    assert_eq!(&b, b"3 one");
    wait_closed(&c).await;
    let reader = tokio::spawn(async move { read_all(&l).await });
    assert_eq!(deliver(&mut c, "two").await, Sent::default());
    c.close().await;
    assert_eq!(reader.await.unwrap(), "3 two");
}

#[tokio::test]
async fn frames_to_resend_go_out_at_close_when_no_batch_follows() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = Connection::new(settings(l.local_addr().unwrap().port(), "10s")).unwrap();
    let accept = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        (l, s)
    });
    deliver(&mut c, "one").await;
    let (l, unread) = accept.await.unwrap();
    drop(unread);
    wait_closed(&c).await;
    let reader = tokio::spawn(async move { read_all(&l).await });
    assert_eq!(c.close().await, Sent { resent_records: 1 }, "counted as resent");
    assert_eq!(reader.await.unwrap(), "3 one");
}
