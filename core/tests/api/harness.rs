//! The registry wired from YAML exactly as the binary wires it, over in-memory storage, and
//! requests sent straight to its handler (no sockets).

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use berth_core::config::{Config, Source};
use berth_core::http::{response, Conn};
use berth_core::oci::Digest;
use berth_core::registry::Registry;
use berth_core::server::Port;
use berth_core::storage::Stores;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

pub struct Harness {
    pub registry: Registry,
    pub connector: Port,
    /// Holds the storage root (token keys) for the harness's lifetime.
    _dir: tempfile::TempDir,
}

/// Builds the registry exactly as the binary does: YAML through `Config::parse`, then
/// `server::registry` (access control included), over in-memory storage.
pub async fn harness_from(yaml: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n{yaml}",
        dir.path().display()
    );
    let config = Config::parse(&text, &Source::new("api-test.yaml", dir.path())).unwrap();
    let stores = Stores::memory().await.unwrap();
    let (config, control) = berth_core::registry::Control::start(config, stores.clone())
        .await
        .unwrap();
    let registry = berth_core::registry::registry(&config, &stores, control)
        .await
        .unwrap();
    let connector = Port::Connector(registry.repos().keys().next().unwrap().clone());
    Harness {
        registry,
        connector,
        _dir: dir,
    }
}

pub async fn harness_with(policy: &str, v1: bool) -> Harness {
    harness_from(&format!(
        "repositories:\n  - {{ name: hosted, kind: hosted, write_policy: {policy}, v1_enabled: {v1} }}\n  - {{ name: other, kind: hosted, v1_enabled: {v1} }}\n"
    ))
    .await
}

pub async fn harness() -> Harness {
    harness_with("allow_redeploy", false).await
}

impl Harness {
    pub async fn call_on(
        &self,
        l: &Port,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test:5000");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(response::full(body.into())).unwrap();
        let conn = Conn {
            peer: "127.0.0.1:50000".parse().unwrap(),
            local: "127.0.0.1:5000".parse().unwrap(),
            tls: false,
            request: 0,
        };
        let resp = berth_core::server::handle(&self.registry, l, conn, req).await;
        let (parts, body) = resp.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.call_on(&self.connector, method, uri, headers, body)
            .await
    }

    pub async fn push_blob(&self, name: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .call(
                "POST",
                &format!("/v2/{name}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        d
    }

    pub async fn push_image(&self, name: &str, tag: &str, seed: &str) -> (Digest, Vec<u8>) {
        let config_bytes = format!("{{\"seed\":\"{seed}\"}}");
        let layer_bytes = format!("layer {seed}");
        let config = self.push_blob(name, config_bytes.as_bytes()).await;
        let layer = self.push_blob(name, layer_bytes.as_bytes()).await;
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.to_string(), "size": layer_bytes.len()}]
        });
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        let r = self
            .call(
                "PUT",
                &format!("/v2/{name}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST)],
                bytes.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (Digest::sha256_of(&bytes), bytes)
    }
}
