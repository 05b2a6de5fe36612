//! The syslog sink: RFC 5424 messages (`format`) over UDP, TCP with octet counting or LF
//! framing (RFC 6587), or TLS (RFC 5425) (`transport`).
//!
//! Over TCP and TLS, what the receiver confirmed just before it closed the connection is sent
//! again on the next one (`resend`): at least once, never lost to a receiver's restart.
//!
//! Oversize messages are dead-lettered (default, nothing lost) or truncated with a
//! `truncated="<original bytes>"` marker in the structured data, per `oversize`; both are counted.

pub mod config;
pub mod format;
pub mod resend;
pub mod transport;

use config::{Framing, SyslogSinkSettings};
use format::{Formatted, Formatter};

use crate::sinks::{Accepted, Batch, BuildError, Sink, SinkError};

pub struct SyslogSink {
    name: String,
    address: String,
    framing: Framing,
    formatter: Formatter,
    conn: transport::Connection,
    buf: Vec<u8>,
    msg: Vec<u8>,
}

impl SyslogSink {
    fn resent(&self, sent: transport::Sent) {
        if sent.resent_records > 0 {
            crate::telemetry::events::RecordsResent { sink: &self.name, records: sent.resent_records as u64 }.emit();
        }
    }

    pub fn new(name: &str, s: SyslogSinkSettings) -> Result<SyslogSink, BuildError> {
        Ok(SyslogSink {
            name: name.to_string(),
            address: s.address.clone(),
            framing: s.framing,
            formatter: Formatter::new(&s),
            conn: transport::Connection::new(s)?,
            buf: Vec::new(),
            msg: Vec::new(),
        })
    }
}

#[async_trait::async_trait]
impl Sink for SyslogSink {
    async fn send(&mut self, batch: &Batch, _: &mut Accepted) -> Result<(), SinkError> {
        let conn = &mut self.conn;
        let datagram = conn.is_datagram();
        self.buf.clear();
        let mut ranges = Vec::with_capacity(batch.records.len());
        let mut truncated = 0u64;
        for (i, r) in batch.records.iter().enumerate() {
            match self.formatter.format(&mut self.msg, r) {
                Formatted::Ok => {}
                Formatted::Truncated { .. } => truncated += 1,
                Formatted::TooLarge { size } => {
                    return Err(SinkError::Poison {
                        index: i,
                        reason: format!("syslog message of {size} bytes exceeds max_message_bytes"),
                    });
                }
            }
            if !datagram {
                match self.framing {
                    Framing::OctetCounting => {
                        self.buf.extend_from_slice(self.msg.len().to_string().as_bytes());
                        self.buf.push(b' ');
                    }
                    Framing::Lf => {}
                }
            }
            let start = self.buf.len();
            self.buf.extend_from_slice(&self.msg);
            ranges.push(start..self.buf.len());
            if !datagram && self.framing == Framing::Lf {
                self.buf.push(b'\n');
            }
        }
        let sent = conn
            .send(&self.buf, &ranges)
            .await
            .map_err(|e| SinkError::Retryable(format!("syslog {}: {e}", self.address)))?;
        self.resent(sent);
        if truncated > 0 {
            crate::telemetry::events::RecordsTruncated { sink: &self.name, records: truncated }.emit();
        }
        Ok(())
    }

    async fn close(&mut self) {
        let sent = self.conn.close().await;
        self.resent(sent);
    }
}
