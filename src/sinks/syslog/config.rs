//! `type = "syslog"`: RFC 5424 messages over UDP, TCP (RFC 6587) or TLS (RFC 5425).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::common::Issues;
use crate::common::tls::TlsClientSettings;
use crate::sinks::common::BatchDefaults;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    /// `host:port`.
    pub address: Option<String>,
    /// `udp`, `tcp` or `tls`.
    pub transport: Option<String>,
    /// TCP only: `octet_counting` (default) or `lf`. TLS always counts octets (RFC 5425).
    pub framing: Option<String>,
    pub app_name: Option<String>,
    pub hostname: Option<String>,
    pub facility: Option<String>,
    pub severity: Option<String>,
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub max_message_bytes: Option<u64>,
    /// `dead_letter` (default: nothing is lost) or `truncate`.
    pub oversize: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Name the server certificate must carry; default: the host part of `address`.
    pub server_name: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// TCP and TLS: when the receiver closes the connection, what it confirmed this long
    /// before is sent again (it may have dropped it unread). `0s` turns it off.
    #[serde(default, with = "humantime_serde")]
    pub resend_window: Option<Duration>,
    /// TCP and TLS: at most this much of the newest confirmed frames is held for that.
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub resend_max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    OctetCounting,
    Lf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    DeadLetter,
    Truncate,
}

#[derive(Debug, Clone)]
pub struct SyslogSinkSettings {
    pub address: String,
    pub transport: Transport,
    pub framing: Framing,
    pub app_name: String,
    pub hostname: Option<String>,
    pub facility: u8,
    pub severity: u8,
    pub max_message_bytes: usize,
    pub oversize: Oversize,
    pub tls: TlsClientSettings,
    pub server_name: String,
    pub timeout: Duration,
    pub resend_window: Duration,
    pub resend_max_bytes: usize,
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
    "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// Printable US-ASCII without spaces, as RFC 5424 requires of HOSTNAME, APP-NAME and MSGID.
pub fn printusascii(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b))
}

pub const BATCH: BatchDefaults =
    BatchDefaults { records: 2000, bytes: 8 << 20, hard_bytes: 1 << 30, linger: Duration::from_millis(200) };

pub fn validate(is: &mut Issues, prefix: &str, c: &SyslogSinkConfig) -> Option<SyslogSinkSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    let address = is.required(&c.address, p("address"));
    let host = address.as_deref().and_then(|a| a.rsplit_once(':')).map(|(h, port)| {
        if port.parse::<u16>().is_err() {
            is.add(p("address"), format!("{port:?} is not a port"));
        }
        h.trim_start_matches('[').trim_end_matches(']').to_string()
    });
    if address.is_some() && host.is_none() {
        is.add(p("address"), "use host:port, e.g. siem.example.com:6514");
    }
    let transport = match c.transport.as_deref() {
        Some("udp") => Transport::Udp,
        Some("tcp") => Transport::Tcp,
        None | Some("tls") => Transport::Tls,
        Some(o) => {
            is.add(p("transport"), format!("{o:?}: use udp, tcp or tls"));
            Transport::Tls
        }
    };
    let framing = match (transport, c.framing.as_deref()) {
        (_, None | Some("octet_counting")) => Framing::OctetCounting,
        (Transport::Tcp, Some("lf")) => Framing::Lf,
        (_, Some("lf")) => {
            is.add(p("framing"), "lf framing is for plain TCP only; RFC 5425 requires octet counting over TLS");
            Framing::OctetCounting
        }
        (_, Some(o)) => {
            is.add(p("framing"), format!("{o:?}: use octet_counting or lf"));
            Framing::OctetCounting
        }
    };
    let app_name = c.app_name.clone().unwrap_or_else(|| "auditkeeper".into());
    if !printusascii(&app_name) || app_name.len() > 48 {
        is.add(p("app_name"), "1-48 printable ASCII characters without spaces (RFC 5424)");
    }
    if let Some(h) = &c.hostname
        && (!printusascii(h) || h.len() > 255)
    {
        is.add(p("hostname"), "1-255 printable ASCII characters without spaces (RFC 5424)");
    }
    let facility = match c.facility.as_deref() {
        None => 16,
        Some(f) => FACILITIES
            .iter()
            .position(|x| *x == f)
            .or_else(|| f.parse::<usize>().ok().filter(|n| *n < 24))
            .unwrap_or_else(|| {
                is.add(p("facility"), format!("{f:?}: use a name ({}) or 0-23", FACILITIES.join(", ")));
                16
            }) as u8,
    };
    let severity = match c.severity.as_deref() {
        None => 6,
        Some(s) => SEVERITIES
            .iter()
            .position(|x| *x == s)
            .or_else(|| s.parse::<usize>().ok().filter(|n| *n < 8))
            .unwrap_or_else(|| {
                is.add(p("severity"), format!("{s:?}: use a name ({}) or 0-7", SEVERITIES.join(", ")));
                6
            }) as u8,
    };
    let default_max = if transport == Transport::Udp { 8192 } else { 65536 };
    let max_message_bytes = c.max_message_bytes.unwrap_or(default_max) as usize;
    if !(480..=(16 << 20)).contains(&max_message_bytes) {
        is.add(p("max_message_bytes"), "must be between 480 bytes (RFC 5424's minimum) and 16MiB");
    }
    if transport == Transport::Udp && max_message_bytes > 65_507 {
        is.add(p("max_message_bytes"), "a UDP datagram carries at most 65507 bytes");
    }
    let oversize = match c.oversize.as_deref() {
        None | Some("dead_letter") => Oversize::DeadLetter,
        Some("truncate") => Oversize::Truncate,
        Some(o) => {
            is.add(p("oversize"), format!("{o:?}: use dead_letter or truncate"));
            Oversize::DeadLetter
        }
    };
    let tls = TlsClientSettings::from_keys(is, prefix, &c.ca_file, &c.client_cert_file, &c.client_key_file);
    if transport != Transport::Tls && tls.is_set() {
        is.add(p("transport"), "ca_file and client certificates need transport = \"tls\"");
    }
    let timeout = c.timeout.unwrap_or(Duration::from_secs(30));
    is.within(p("timeout"), timeout, Duration::from_secs(1), Duration::from_secs(3600));
    let resend_window = c.resend_window.unwrap_or(Duration::from_secs(10));
    is.within(p("resend_window"), resend_window, Duration::ZERO, Duration::from_secs(3600));
    let resend_max_bytes = c.resend_max_bytes.unwrap_or(BATCH.bytes);
    if resend_max_bytes > 256 << 20 {
        is.add(p("resend_max_bytes"), "must be at most 256MiB (it is held in memory)");
    }
    if transport == Transport::Udp && (c.resend_window.is_some() || c.resend_max_bytes.is_some()) {
        is.add(p("resend_window"), "UDP confirms nothing, so there is nothing to resend: use tcp or tls");
    }
    Some(SyslogSinkSettings {
        server_name: c.server_name.clone().or(host.clone()).unwrap_or_default(),
        address: address?,
        transport,
        framing,
        app_name,
        hostname: c.hostname.clone(),
        facility,
        severity,
        max_message_bytes,
        oversize,
        tls,
        timeout,
        resend_window,
        resend_max_bytes: resend_max_bytes as usize,
    })
}

impl SyslogSinkSettings {
    /// The environment check: over TLS, the CA and client certificate files parse.
    pub fn check(&self, is: &mut Issues, prefix: &str) {
        if self.transport == Transport::Tls {
            self.tls.check(is, prefix);
        }
    }
}
