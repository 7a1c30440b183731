//! A throwaway OpenID Connect provider (the npm package `oidc-provider` on the machine's
//! Node.js, run by `tests/oidc/provider.mjs`) and a browser made of curl with a cookie jar
//! that walks its sign-in pages: for the UI's single sign-on, and to obtain real ID tokens
//! for the CI workload tests. Restarted with another key id, the provider has rotated its
//! signing key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::edge::free_port;

/// Where `.ci/run` installs oidc-provider (`npm install --prefix`).
pub fn module() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home)
        .join(".cache/berth-tools/oidc-provider/node_modules/oidc-provider/lib/index.js")
}

/// A running provider.
pub struct Provider {
    child: Option<Child>,
    /// `provider.mjs`, or `ci-issuer.mjs` for a CI platform's token service.
    script: &'static str,
    /// The host name in its issuer URL (it listens on 127.0.0.1 whatever the name).
    pub host: String,
    pub port: u16,
    redirect_uris: Vec<String>,
    log: PathBuf,
    _dir: TempDir,
}

impl Provider {
    /// The port it will listen on, chosen before anything is configured with it.
    pub fn port() -> u16 {
        free_port()
    }

    /// Starts as `http://host:port`, signing with key `kid`, taking `redirect_uris` for the
    /// `berth` client.
    pub fn start(host: &str, port: u16, kid: &str, redirect_uris: &[String]) -> Provider {
        Self::launch("provider.mjs", host, port, kid, redirect_uris)
    }

    /// Starts a CI platform's token service shaped like GitHub Actions' (`ci-issuer.mjs`):
    /// a discovery document without an authorization endpoint, tokens minted on request.
    pub fn start_ci_issuer(port: u16, kid: &str) -> Provider {
        Self::launch("ci-issuer.mjs", "127.0.0.1", port, kid, &[])
    }

    fn launch(
        script: &'static str,
        host: &str,
        port: u16,
        kid: &str,
        redirect_uris: &[String],
    ) -> Provider {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Provider {
            child: None,
            script,
            host: host.to_owned(),
            port,
            redirect_uris: redirect_uris.to_vec(),
            log: dir.path().join("provider.log"),
            _dir: dir,
        };
        p.spawn(kid);
        p
    }

    fn spawn(&mut self, kid: &str) {
        let module = module();
        assert!(
            module.exists(),
            "{} missing: run `npm install --prefix ~/.cache/berth-tools/oidc-provider oidc-provider@8.8.1` (.ci/run does)",
            module.display()
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("oidc")
            .join(self.script);
        let log = std::fs::File::create(&self.log).expect("provider log");
        let child = Command::new("node")
            .arg(script)
            .env("OIDC_PROVIDER_MODULE", &module)
            .env("PORT", self.port.to_string())
            .env("ISSUER_HOST", &self.host)
            .env("KID", kid)
            .env("REDIRECT_URIS", self.redirect_uris.join(" "))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("node");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("listening")
        {
            assert!(
                Instant::now() < deadline,
                "provider did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn issuer(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Stops it (the port stays ours to start again on).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts on the same port with a new signing key (the old one is no longer published).
    pub fn rotate(&mut self, kid: &str) {
        self.stop();
        self.spawn(kid);
    }

    /// A real ID token for CI client `client_id` (its audience) of account `sub`, by the
    /// authorization-code flow with PKCE, as a CI platform's token service would hand out.
    pub fn id_token(&self, client_id: &str, sub: &str) -> String {
        let browser = Browser::new();
        let verifier = "a-test-pkce-verifier-of-enough-length-0123456789";
        let challenge = {
            use base64::Engine as _;
            use sha2::Digest as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()))
        };
        let redirect = "http://127.0.0.1/ci-callback";
        let start = format!(
            "{}/auth?client_id={client_id}&response_type=code&scope=openid%20ci&redirect_uri={redirect}\
             &code_challenge={challenge}&code_challenge_method=S256&nonce=n&state=s",
            self.issuer()
        );
        let back = browser.sign_in(&start, sub, redirect);
        let code = query_param(&back, "code").expect("code in the redirect");
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                &format!("{}/token", self.issuer()),
            ])
            .args([
                "-d",
                "grant_type=authorization_code",
                "-d",
                &format!("code={code}"),
            ])
            .args([
                "-d",
                &format!("redirect_uri={redirect}"),
                "-d",
                &format!("client_id={client_id}"),
            ])
            .args(["-d", &format!("code_verifier={verifier}")])
            .output()
            .expect("curl");
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
        body["id_token"].as_str().expect("id_token").to_owned()
    }
}

impl Provider {
    /// A job's token from the CI issuer: for audience `aud`, of `repository`, living `ttl_s`.
    pub fn ci_token(&self, aud: &str, repository: &str, ttl_s: u64) -> String {
        let url = format!(
            "{}/token?aud={aud}&repository={repository}&ttl={ttl_s}",
            self.issuer()
        );
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", &url])
            .output()
            .expect("curl");
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
        body["value"].as_str().expect("value").to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One answer: status, `Location`, body.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    pub headers: String,
}

/// curl with a cookie jar: a browser without JavaScript.
pub struct Browser {
    dir: TempDir,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn curl(&self, url: &str, form: Option<&str>) -> Page {
        self.curl_with(url, form, &[])
    }

    fn curl_with(&self, url: &str, form: Option<&str>, extra: &[String]) -> Page {
        let jar = self.dir.path().join("jar");
        let head = self.dir.path().join("head");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-D"])
            .arg(&head)
            .arg("-b")
            .arg(&jar)
            .arg("-c")
            .arg(&jar)
            .arg("-w")
            .arg("\n%{http_code}");
        if let Some(f) = form {
            cmd.args(["--data", f]);
        }
        cmd.args(extra);
        let out = cmd.arg(url).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        let headers = std::fs::read_to_string(&head).unwrap_or_default();
        let location = headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .map(|l| resolve(url, l.trim()));
        Page {
            status: status.trim().parse().unwrap_or(0),
            location,
            body: body.to_owned(),
            headers,
        }
    }

    pub fn get(&self, url: &str) -> Page {
        self.curl(url, None)
    }

    /// A GET of `url` whose connection to `name` (`host:port`) goes to `to` instead: another
    /// core behind the same name.
    pub fn get_via(&self, url: &str, name: &str, to: &str) -> Page {
        let route = format!("{name}:{to}");
        self.curl_with(url, None, &["--connect-to".into(), route])
    }

    pub fn post(&self, url: &str, form: &str) -> Page {
        self.curl(url, Some(form))
    }

    /// Follows redirects from `start` through the provider's sign-in page (signing in as
    /// `account`) until one leads to a URL under `until`, which is returned unvisited.
    pub fn sign_in(&self, start: &str, account: &str, until: &str) -> String {
        let mut url = start.to_owned();
        for _ in 0..20 {
            if url.starts_with(until) {
                return url;
            }
            let page = self.get(&url);
            if let Some(next) = page.location {
                url = next;
                continue;
            }
            assert_eq!(page.status, 200, "{url}: {}", page.body);
            let prompt = if page.body.contains("value=\"consent\"") {
                "consent"
            } else {
                "login"
            };
            let form = format!("prompt={prompt}&login={}&password=any", urlencode(account));
            let posted = self.post(&url, &form);
            url = posted
                .location
                .unwrap_or_else(|| panic!("{url}: {}", posted.body));
        }
        panic!("sign-in from {start} never reached {until}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `location` made absolute against `base`.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    format!("{}{location}", &base[..origin_end])
}

/// A query parameter of `url` (no decoding beyond what tests need).
pub fn query_param(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}
