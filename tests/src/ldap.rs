//! A throwaway OpenLDAP server (Debian's `slapd`): its own config file and database under a
//! temporary directory, loaded from an LDIF with `slapadd`, listening on loopback for ldap://
//! (StartTLS offered) and ldaps:// with a certificate from a test CA. Changed while running
//! with `ldapmodify` as the root DN, stopped and started again on the same ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::edge::{free_port, issue, make_ca};
use crate::tools::{run, with_stdin};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
const ROOT_PW: &str = "slapd-root-pw";

/// A running slapd.
pub struct Slapd {
    child: Option<Child>,
    dir: TempDir,
    /// `ldap://127.0.0.1:PORT` and `ldaps://localhost:PORT`.
    pub ldap_port: u16,
    pub ldaps_port: u16,
}

impl Slapd {
    /// Starts slapd over `ldif` (entries under [`SUFFIX`]; the suffix entry itself is added).
    pub fn start(ldif: &str) -> Slapd {
        let dir = tempfile::tempdir().expect("tempdir");
        make_ca(&dir.path().join("ca"));
        let (cert, key) = issue(
            &dir.path().join("ca"),
            &dir.path().join("leaf"),
            "ldap",
            &["localhost"],
            &["127.0.0.1"],
        );
        std::fs::create_dir_all(dir.path().join("db")).expect("db dir");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {d}/slapd.pid\n\
             TLSCACertificateFile {d}/ca/ca.crt\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n\
             database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\ndirectory {d}/db\n\
             access to attrs=userPassword by self read by anonymous auth by * none\n\
             access to * by users read by * none\n",
            cert.display(),
            key.display(),
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("slapd.conf"), conf).expect("slapd.conf");
        let base = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n{ldif}"
        );
        std::fs::write(dir.path().join("data.ldif"), base).expect("ldif");
        run(Command::new("slapadd")
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .arg("-l")
            .arg(dir.path().join("data.ldif")));
        let mut slapd = Slapd {
            child: None,
            dir,
            ldap_port: free_port(),
            ldaps_port: free_port(),
        };
        slapd.resume();
        slapd
    }

    /// The test CA that signed the server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://localhost:{}", self.ldap_port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.ldaps_port)
    }

    /// Applies an LDIF of changes (`changetype: modify`, ...) as the root DN.
    pub fn modify(&self, ldif: &str) {
        let out = with_stdin(
            Command::new("ldapmodify").args([
                "-x",
                "-H",
                &format!("ldap://127.0.0.1:{}", self.ldap_port),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PW,
            ]),
            ldif,
        );
        assert!(
            out.status.success(),
            "ldapmodify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (the directory is "down"); [`Slapd::resume`] starts it again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server on its ports and waits until both answer TCP.
    pub fn resume(&mut self) {
        let urls = format!(
            "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
            self.ldap_port, self.ldaps_port
        );
        let child = Command::new("slapd")
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("slapd.log")).expect("log"),
            ))
            .spawn()
            .expect("slapd (Debian package slapd) must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.ldap_port, self.ldaps_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "slapd did not start: {}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
