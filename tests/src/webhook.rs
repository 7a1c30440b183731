//! A real webhook receiver for the event tests and benchmarks: Python's `http.server` as a
//! process, appending every POST (path, content type, authorization, JSON body) as one line
//! of `out`. Killed on drop, so a test can take it down and bring it back on the same port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RECEIVER: &str = r#"
import http.server, json, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        record = {"path": self.path, "content_type": self.headers.get("content-type"),
                  "authorization": self.headers.get("authorization"), "body": json.loads(body)}
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()
"#;

/// The receiver process.
pub struct Receiver {
    child: Child,
}

impl Receiver {
    /// Starts a receiver on `port` (its script written into `dir`), recording into `out`.
    pub fn start(dir: &Path, port: u16, out: &Path) -> Receiver {
        let script: PathBuf = dir.join("receiver.py");
        std::fs::write(&script, RECEIVER).expect("receiver script");
        let child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver { child }
    }

    /// The receiver's process id (for measuring its CPU).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every event received so far on `path`, each with the record of the POST that carried it.
pub fn received(out: &Path, path: &str) -> Vec<(serde_json::Value, serde_json::Value)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut events = Vec::new();
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a line being written
        };
        if record["path"] != path {
            continue;
        }
        for e in record["body"]["events"].as_array().into_iter().flatten() {
            events.push((e.clone(), record.clone()));
        }
    }
    events
}
