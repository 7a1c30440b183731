//! The OpenAPI document served at `<context>/api/v1/openapi.json` against the real admin API:
//! a script of calls reaches every operation the document lists (and only those), each answer's
//! status is one the document gives for that operation, and each JSON body validates against
//! its schema.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::{json, Value};

use berth_tests::core::Core;
use berth_tests::edge::free_port;
use berth_tests::http::{request, Response};
use berth_tests::registry::{oci_manifest, OCI_MANIFEST};

struct Checker {
    doc: Value,
    main: String,
    auth: String,
    seen: BTreeSet<(String, String)>,
}

impl Checker {
    /// The template of the documented path `path` (query stripped) matches.
    fn template(&self, path: &str) -> String {
        let path = path.split('?').next().unwrap();
        let segs: Vec<&str> = path.split('/').collect();
        self.doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .find(|t| {
                let ts: Vec<&str> = t.split('/').collect();
                ts.len() == segs.len()
                    && ts
                        .iter()
                        .zip(&segs)
                        .all(|(t, s)| t.starts_with('{') || t == s)
            })
            .unwrap_or_else(|| panic!("{path} is not in the document"))
            .clone()
    }

    /// Follows a local `$ref`.
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => self.doc.pointer(r.trim_start_matches('#')).unwrap(),
            None => v,
        }
    }

    fn call(&mut self, method: &str, path: &str, body: Option<Value>, signed: bool) -> Response {
        let full = format!("/berth{path}");
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("Content-Type", "application/json")];
        if signed {
            headers.push(("Authorization", self.auth.as_str()));
        }
        let r = request(&self.main, method, &full, &headers, bytes.as_bytes()).unwrap();
        self.check(method, path, &r);
        r
    }

    fn check(&mut self, method: &str, path: &str, r: &Response) {
        let template = self.template(path);
        let op = &self.doc["paths"][&template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        self.seen.insert((method.to_owned(), template.clone()));
        let status = r.status.to_string();
        let resp = self.resolve(&op["responses"][&status]);
        assert!(
            resp.is_object(),
            "{method} {path} answered {status}, which the document does not list: {}",
            String::from_utf8_lossy(&r.body)
        );
        let Some(schema) = resp["content"]["application/json"]["schema"].as_object() else {
            return;
        };
        let mut root = Value::Object(schema.clone());
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root).unwrap();
        let body: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e})"));
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} ({status}) does not match its schema: {errors:?}\n{body:#}"
        );
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (t, ops) in self.doc["paths"].as_object().unwrap() {
            for m in ops
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
            {
                all.insert((m.to_uppercase(), t.clone()));
            }
        }
        all
    }
}

fn push_tagged(addr: &str, auth: &str, seed: &str) {
    let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    let layer = format!("layer {seed}").into_bytes();
    for b in [&config, &layer] {
        let path = format!(
            "/v2/app/blobs/uploads/?digest={}",
            berth_tests::http::digest(b)
        );
        let r = request(addr, "POST", &path, &[("Authorization", auth)], b).unwrap();
        assert_eq!(r.status, 201);
    }
    let m = oci_manifest(&config, &[&layer]);
    let headers = [("Authorization", auth), ("Content-Type", OCI_MANIFEST)];
    let r = request(addr, "PUT", "/v2/app/manifests/v1", &headers, &m).unwrap();
    assert_eq!(r.status, 201);
}

#[test]
fn every_documented_operation_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let config = berth_tests::core::secured_config(&dir.path().join("data"), "root-password");
    let core = Core::start_in(dir, &config);
    let served = request(&core.main, "GET", "/berth/api/v1/openapi.json", &[], b"").unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode("root:root-password");
    let mut c = Checker {
        doc: served.json(),
        main: core.main.clone(),
        auth: format!("Basic {b64}"),
        seen: BTreeSet::new(),
    };
    assert_eq!(c.doc["openapi"], "3.1.0");
    c.call("GET", "/api/v1/openapi.json", None, false);
    c.call("GET", "/health", None, false);
    assert_eq!(
        c.call("GET", "/api/v1/repositories", None, false).status,
        401
    );

    // Repositories.
    let port = free_port();
    let made = json!({ "name": "made", "kind": "hosted", "connector": { "http": format!("127.0.0.1:{port}") } });
    assert_eq!(
        c.call("POST", "/api/v1/repositories", Some(made.clone()), true)
            .status,
        201
    );
    assert_eq!(
        c.call("POST", "/api/v1/repositories", Some(made), true)
            .status,
        409
    );
    let bad = json!({ "name": "bad", "kind": "hosted", "connector": { "http": "nope" } });
    assert_eq!(
        c.call("POST", "/api/v1/repositories", Some(bad), true)
            .status,
        400
    );
    c.call("GET", "/api/v1/repositories", None, true);
    c.call("GET", "/api/v1/repositories/made", None, true);
    assert_eq!(
        c.call("GET", "/api/v1/repositories/nosuch", None, true)
            .status,
        404
    );
    let policy = json!({ "kind": "hosted", "connector": { "http": format!("127.0.0.1:{port}") },
        "cleanup": [{ "name": "old", "tags": "^tmp-", "keep_last": 2 }] });
    assert_eq!(
        c.call("PUT", "/api/v1/repositories/made", Some(policy), true)
            .status,
        200
    );
    c.call("GET", "/api/v1/certificates", None, true);

    // Life-cycle, over real content: a tag moved once, then restored.
    let hosted = core.connector("hosted").to_owned();
    let auth = c.auth.clone();
    push_tagged(&hosted, &auth, "one");
    push_tagged(&hosted, &auth, "two");
    c.call("GET", "/api/v1/repositories/hosted/usage", None, true);
    c.call(
        "GET",
        "/api/v1/repositories/hosted/history?image=app&tag=v1",
        None,
        true,
    );
    assert_eq!(
        c.call("GET", "/api/v1/repositories/hosted/history", None, true)
            .status,
        400
    );
    let undo = json!({ "image": "app", "tag": "v1" });
    let r = c.call(
        "POST",
        "/api/v1/repositories/hosted/restore",
        Some(undo),
        true,
    );
    assert_eq!(r.status, 200);
    c.call("GET", "/api/v1/repositories/made/cleanup", None, true);
    c.call(
        "POST",
        "/api/v1/repositories/made/cleanup?dry_run=true",
        None,
        true,
    );
    c.call("GET", "/api/v1/gc", None, true);
    c.call("GET", "/api/v1/signing-key", None, true);
    c.call("POST", "/api/v1/gc?dry_run=true", None, true);

    // Users, roles, tokens.
    let role =
        json!({ "name": "ci", "privileges": [{ "repositories": "hosted", "actions": ["read"] }] });
    assert_eq!(
        c.call("POST", "/api/v1/roles", Some(role), true).status,
        201
    );
    c.call("GET", "/api/v1/roles", None, true);
    c.call("GET", "/api/v1/directory-users", None, true);
    c.call("GET", "/api/v1/roles/ci", None, true);
    let wider = json!({ "privileges": [{ "repositories": "*", "actions": ["read", "write"] }] });
    assert_eq!(
        c.call("PUT", "/api/v1/roles/ci", Some(wider), true).status,
        200
    );
    let user = json!({ "name": "carol", "password": "carol-password", "roles": ["ci"] });
    assert_eq!(
        c.call("POST", "/api/v1/users", Some(user), true).status,
        201
    );
    c.call("GET", "/api/v1/users", None, true);
    c.call("GET", "/api/v1/users/carol", None, true);
    c.call(
        "PUT",
        "/api/v1/users/carol",
        Some(json!({ "roles": [] })),
        true,
    );
    let pw = json!({ "password": "carol-password-2" });
    assert_eq!(
        c.call("PUT", "/api/v1/users/carol/password", Some(pw), true)
            .status,
        204
    );
    let t = json!({ "name": "deploy", "expires_in": "30d" });
    let r = c.call("POST", "/api/v1/users/carol/tokens", Some(t), true);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    c.call("GET", "/api/v1/users/carol/tokens", None, true);
    let path = format!("/api/v1/users/carol/tokens/{id}");
    assert_eq!(c.call("DELETE", &path, None, true).status, 204);
    assert_eq!(
        c.call("DELETE", "/api/v1/users/carol", None, true).status,
        204
    );
    assert_eq!(c.call("DELETE", "/api/v1/roles/ci", None, true).status, 204);
    assert_eq!(
        c.call("DELETE", "/api/v1/repositories/made", None, true)
            .status,
        204
    );

    // No replication rules in this config: an empty list, and no such rule; one made,
    // replaced, read and deleted at run time.
    c.call("GET", "/api/v1/replication", None, true);
    let rule = json!({ "name": "dr", "direction": "push", "repository": "hosted",
        "remote": { "url": "https://dr.example" }, "images": "team/*" });
    assert_eq!(
        c.call("POST", "/api/v1/replication", Some(rule.clone()), true)
            .status,
        201
    );
    let bad = json!({ "name": "dr", "direction": "pull", "repository": "nope", "remote": { "url": "https://x" } });
    assert_eq!(
        c.call("PUT", "/api/v1/replication/dr", Some(bad), true)
            .status,
        400
    );
    assert_eq!(
        c.call("PUT", "/api/v1/replication/dr", Some(rule), true)
            .status,
        200
    );
    assert_eq!(
        c.call("GET", "/api/v1/replication/dr", None, true).status,
        200
    );
    assert_eq!(
        c.call("DELETE", "/api/v1/replication/dr", None, true)
            .status,
        204
    );
    assert_eq!(
        c.call("GET", "/api/v1/replication/dr", None, true).status,
        404
    );
    let run = c.call("POST", "/api/v1/replication/nope/run", None, true);
    assert_eq!(run.status, 404);
    let runs = c.call("GET", "/api/v1/replication/nope/runs", None, true);
    assert_eq!(runs.status, 404);

    let missing: Vec<_> = c.operations().difference(&c.seen).cloned().collect();
    assert!(
        missing.is_empty(),
        "documented but never called: {missing:?}"
    );
}
