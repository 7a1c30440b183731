//! A small WebDriver client for headless Debian Chromium through chromedriver: enough to load
//! pages, find elements by CSS selector, type, click, read text and take screenshots. Plain
//! JSON over [`crate::http`]; every call is one request, so a failing step says exactly what
//! the browser answered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::http::request;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session on it; both end on drop.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// Whether Chromium and chromedriver are installed.
pub fn available() -> bool {
    Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists()
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    pub fn start() -> Browser {
        let port = crate::edge::free_port();
        let mut driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while request(&addr, "GET", "/status", &[], b"").is_err() {
            if Instant::now() > deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("chromedriver did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        // The flags the machine notes give: no background traffic on a closed network.
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        }}});
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("session id").to_owned();
        // Finding an element waits for it (a page that is still loading after a click).
        b.call("POST", &b.s("/timeouts"), Some(json!({ "implicit": 5000 })));
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let bytes = body.unwrap_or(json!({})).to_string();
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            bytes.into_bytes()
        };
        let r = request(
            &self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            &body,
        )
        .expect("chromedriver request");
        if r.status != 200 {
            return Err(format!("{} {}", r.status, String::from_utf8_lossy(&r.body)));
        }
        Ok(r.json()["value"].clone())
    }

    /// Runs `act` (a click or keys that load another page) and waits until the page it was
    /// on is gone, so the next lookup sees the new page.
    fn navigating(&self, act: impl FnOnce()) {
        let old = self.all("html").into_iter().next();
        act();
        let Some(old) = old else { return };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let path = self.s(&format!("/element/{old}/name"));
            if self.try_call("GET", &path, None).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.navigating(|| {
            self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
        });
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every element matching `css`, as element ids.
    pub fn all(&self, css: &str) -> Vec<String> {
        let v = self.call(
            "POST",
            &self.s("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one element matching `css` (the first if several).
    pub fn find(&self, css: &str) -> String {
        self.all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {css:?} on {}", self.url()))
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.element_text(&id)
    }

    pub fn element_text(&self, id: &str) -> String {
        self.call("GET", &self.s(&format!("/element/{id}/text")), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.click_element(&id);
    }

    /// Clicks an element that loads another page, and waits for it.
    pub fn click_element(&self, id: &str) {
        self.navigating(|| {
            self.call("POST", &self.s(&format!("/element/{id}/click")), None);
        });
    }

    /// Clicks the link of `css` whose text is `text`.
    pub fn click_text(&self, css: &str, text: &str) {
        let id = self
            .all(css)
            .into_iter()
            .find(|e| self.element_text(e) == text)
            .unwrap_or_else(|| panic!("no {css:?} reading {text:?} on {}", self.url()));
        self.click_element(&id);
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/value")),
            Some(json!({ "text": text })),
        );
    }

    /// Types into a field and presses Enter, which submits its form; waits for the result.
    pub fn submit_into(&self, css: &str, text: &str) {
        self.navigating(|| self.type_into(css, &format!("{text}\u{E007}")));
    }

    /// Signs in on the UI's login page under `base` (`http://host:port/context`).
    pub fn login(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/ui/login"));
        self.type_into("#user", user);
        self.type_into("#password", password);
        self.click("#login");
    }

    /// The visible texts of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.all(css).iter().map(|e| self.element_text(e)).collect()
    }

    /// The page's visible text.
    pub fn body_text(&self) -> String {
        self.text("body")
    }

    /// Saves a PNG screenshot as `dir/name.png` and returns its path.
    pub fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let b64 = self.call("GET", &self.s("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(&self.addr, "DELETE", &self.s(""), &[], b"");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
