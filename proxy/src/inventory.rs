//! `berth-proxy certs`: the certificate inventory on the command line.
//!
//! The running edge knows best what it serves (the last reload's result, ACME state), so the
//! command asks its metrics listener's `/certs`; without a metrics listener, or with the edge
//! stopped, it reads the configured files and says that it did. A core with direct-HTTPS
//! connectors answers the same document on its own metrics listener (`--core ADDR`), so one
//! table shows every certificate a deployment serves.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use berth_certs::CertEntry;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why the live inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot reach the metrics listener at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("the metrics listener at {addr} answered /certs with {reason}")]
    BadAnswer { addr: SocketAddr, reason: String },
}

/// The certificates one process serves: `edge`, or `core ADDR`.
#[derive(Debug, Clone)]
pub struct Served {
    pub process: String,
    pub entries: Vec<CertEntry>,
}

#[derive(serde::Deserialize)]
struct Document {
    certificates: Vec<CertEntry>,
}

/// Reads the inventory from a running edge's or core's metrics listener.
pub async fn fetch_live(addr: SocketAddr) -> Result<Vec<CertEntry>, InventoryError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri =
        format!("http://{addr}/certs")
            .parse()
            .map_err(|e: http::uri::InvalidUri| InventoryError::BadAnswer {
                addr,
                reason: e.to_string(),
            })?;
    let unreachable = |reason: String| InventoryError::Unreachable { addr, reason };
    let res = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let bad = |reason: String| InventoryError::BadAnswer { addr, reason };
    if !res.status().is_success() {
        return Err(bad(format!("status {}", res.status())));
    }
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| bad(e.to_string()))?
        .to_bytes();
    let doc: Document = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    Ok(doc.certificates)
}

/// The inventory as an aligned table, one certificate per line.
pub fn table(served: &[Served]) -> String {
    let mut rows = vec![[
        "PROCESS".to_owned(),
        "LISTENER".to_owned(),
        "SOURCE".to_owned(),
        "SUBJECT".to_owned(),
        "SANS".to_owned(),
        "ISSUER".to_owned(),
        "NOT AFTER".to_owned(),
        "DAYS".to_owned(),
        "LAST RELOAD".to_owned(),
    ]];
    for (process, e) in served
        .iter()
        .flat_map(|s| s.entries.iter().map(move |e| (&s.process, e)))
    {
        let source = e.source.as_str().to_owned();
        let reload = match &e.last_reload_error {
            None => format!("{} ok", e.last_reload),
            Some(err) => format!("{} FAILED: {err}", e.last_reload),
        };
        let (subject, sans, issuer, not_after, days) = match &e.info {
            Some(i) => (
                i.subject.clone(),
                i.sans.join(","),
                i.issuer.clone(),
                i.not_after.clone(),
                i.days_left.to_string(),
            ),
            None => Default::default(),
        };
        let listener = if e.sni.is_empty() {
            e.listener.clone()
        } else {
            format!("{} (sni {})", e.listener, e.sni.join(","))
        };
        rows.push([
            process.clone(),
            listener,
            source,
            subject,
            sans,
            issuer,
            not_after,
            days,
            reload,
        ]);
    }
    let mut widths = [0usize; 9];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (w, c)) in widths.iter().zip(r).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
