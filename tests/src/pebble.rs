//! Let's Encrypt's test CA, Debian `pebble`, on loopback, with `pebble-challtestsrv` as its
//! DNS so that test names (`registry.test`) resolve to 127.0.0.1. Pebble validates for real:
//! it connects to the edge's port for TLS-ALPN-01 (`tlsPort`) or HTTP-01 (`httpPort`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::edge::{free_port, issue, make_ca};

/// A pebble and its DNS, killed on drop; [`Pebble::stop`] and [`Pebble::restart`] for outages.
pub struct Pebble {
    pebble: Option<Child>,
    dns: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    pub management: u16,
    dns_port: u16,
}

impl Pebble {
    /// Validates on `tls_port` (TLS-ALPN-01) and `http_port` (HTTP-01); issues certificates
    /// valid for `validity`.
    pub fn start(tls_port: u16, http_port: u16, validity: Duration) -> Pebble {
        Pebble::start_with(tls_port, http_port, validity, None)
    }

    /// As [`Pebble::start`], registering only accounts bound to the external account `kid`
    /// with the HMAC key `key` (base64url, RFC 8555 §7.3.4).
    pub fn start_requiring_eab(
        tls_port: u16,
        http_port: u16,
        validity: Duration,
        kid: &str,
        key: &str,
    ) -> Pebble {
        Pebble::start_with(tls_port, http_port, validity, Some((kid, key)))
    }

    fn start_with(
        tls_port: u16,
        http_port: u16,
        validity: Duration,
        eab: Option<(&str, &str)>,
    ) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        make_ca(&dir.path().join("ca"));
        let (cert, key) = issue(
            &dir.path().join("ca"),
            &dir.path().join("leaf"),
            "pebble",
            &["localhost"],
            &["127.0.0.1"],
        );
        let (port, management, dns_port) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": eab.is_some(),
            "externalAccountMACKeys": eab.map(|(kid, key)| serde_json::json!({ kid: key })),
            "certificateValidityPeriod": validity.as_secs(),
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).expect("config");
        let dns = Command::new("pebble-challtestsrv")
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .arg("-dns01")
            .arg(format!("127.0.0.1:{dns_port}"))
            .arg("-management")
            .arg(format!("127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (Debian package pebble)");
        let mut p = Pebble {
            pebble: None,
            dns,
            dir,
            port,
            management,
            dns_port,
        };
        p.restart();
        p
    }

    /// Starts pebble (again): a new CA, forgetting every account and order.
    pub fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("pebble.log")).expect("log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{}", self.dns_port))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pebble (Debian package pebble)");
        self.pebble = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.management)).is_err() {
            assert!(Instant::now() < deadline, "pebble did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.pebble.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The CA that signed pebble's own HTTPS certificate (the edge's `ca_file`).
    pub fn https_ca(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }

    /// Pebble's current issuing root, written to `out` (it changes at every start).
    pub fn root(&self, out: &Path) -> PathBuf {
        let o = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(self.https_ca())
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .expect("curl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::write(out, &o.stdout).expect("root");
        out.to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}
