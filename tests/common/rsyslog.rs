//! A private rsyslogd on loopback for syslog sink tests: one input (UDP, TCP or TLS) whose
//! messages are written verbatim (`%rawmsg%`) one per line.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Rsyslog {
    pub dir: PathBuf,
    pub port: u16,
    pub out: PathBuf,
    pub ca: PathBuf,
    transport: String,
    child: Option<Child>,
}

pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

/// The rsyslogd binary, or `None` (said out loud) when it is not installed; see `missing_peer`.
pub fn rsyslogd() -> Option<&'static str> {
    // /usr/sbin is not on every user's PATH.
    let found =
        ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/bin/rsyslogd"].into_iter().find(|p| Path::new(p).exists());
    let tls = Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists()
        || Path::new("/usr/lib/rsyslog/lmnsd_gtls.so").exists();
    if found.is_none() || !tls {
        super::missing_peer("rsyslogd with GnuTLS (apt-get install rsyslog rsyslog-gnutls, or run ./.ci/run)");
        return None;
    }
    found
}

impl Rsyslog {
    /// `transport`: "udp", "tcp" or "tls".
    pub fn start(dir: &Path, transport: &str) -> Rsyslog {
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let tls = auditkeeper::simulator::tls::generate().unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &tls.ca_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), &tls.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &tls.key_pem).unwrap();
        let port = free_port(transport == "udp");
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            port,
            out: dir.join("received.log"),
            ca,
            transport: transport.into(),
            child: None,
        };
        r.restart();
        r
    }

    fn config(&self) -> String {
        let d = self.dir.display();
        let input = match self.transport.as_str() {
            "udp" => {
                format!("module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{}\")", self.port)
            }
            "tcp" => {
                format!("module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\")", self.port)
            }
            _ => format!(
                "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\")",
                self.port
            ),
        };
        format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="64k"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{d}/ca.pem" DefaultNetstreamDriverCertFile="{d}/cert.pem" DefaultNetstreamDriverKeyFile="{d}/key.pem")
{input}
template(name="raw" type="string" string="%rawmsg%\n")
action(type="omfile" file="{out}" template="raw" flushOnTXEnd="on" asyncWriting="off")
"#,
            out = self.out.display()
        )
    }

    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.join("rsyslog.conf");
        std::fs::write(&conf, self.config()).unwrap();
        let pid = self.dir.join("rsyslog.pid");
        let _ = std::fs::remove_file(&pid);
        let bin = rsyslogd().expect("callers check rsyslogd() first");
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(&pid)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog rsyslog-gnutls)");
        self.child = Some(child);
        // Ready once the port accepts (TCP) or the pid file exists (UDP).
        let start = Instant::now();
        loop {
            let ready = if self.transport == "udp" {
                pid.exists()
            } else {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            };
            if ready {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "rsyslogd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Graceful stop (SIGTERM): rsyslog writes what it has read, then exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
