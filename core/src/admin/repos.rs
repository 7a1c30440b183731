//! `/api/v1/repositories[/NAME]`: repositories of every kind created, changed and deleted at
//! run time (bodies in the shape of one `repositories:` entry of the config file), each shown
//! with where its settings come from, the addresses it listens on and, for a proxy, the
//! remote's health; `/api/v1/certificates`: what direct-HTTPS connectors serve.

use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::error::{AdminError, AdminResult};
use crate::http::response;
use crate::oci::RepoName;
use crate::registry::control::{ChangeError, RepoChange};
use crate::registry::Registry;

/// One repository as the admin API shows it.
async fn view(reg: &Registry, name: &RepoName) -> Option<Value> {
    let entry = reg.repos().get(name).cloned()?;
    let listening = reg.control.listening().await;
    let addrs: Vec<Value> = listening
        .get(name)
        .map(|v| {
            v.iter()
                .map(|(a, tls)| json!({ "address": a.to_string(), "https": tls }))
                .collect()
        })
        .unwrap_or_default();
    Some(json!({
        "name": name.as_str(),
        "kind": entry.repo.kind(),
        "v1_enabled": entry.v1_enabled,
        "origin": reg.control.origin(name),
        "settings": entry.config.entry,
        "listening": addrs,
        "status": entry.repo.status(),
    }))
}

/// `GET /api/v1/repositories`.
pub(super) async fn list(reg: &Registry) -> AdminResult {
    let mut out = Vec::new();
    for name in reg.repos().keys() {
        if let Some(v) = view(reg, name).await {
            out.push(v);
        }
    }
    Ok(response::json(StatusCode::OK, &Value::Array(out)))
}

/// `GET`, `PUT`, `DELETE /api/v1/repositories/NAME` and `POST /api/v1/repositories`.
pub(super) async fn change(
    reg: &Registry,
    name: Option<String>,
    req: &Parts,
    body: Option<Value>,
    actor: &str,
) -> AdminResult {
    let change = match (&req.method, name, body) {
        (&Method::POST, None, Some(v)) => RepoChange::Create(v),
        (&Method::PUT, Some(n), Some(v)) => RepoChange::Replace(n, v),
        (&Method::DELETE, Some(n), _) => RepoChange::Delete(n),
        (_, Some(n), _) => {
            let name = known(reg, &n)?;
            let v = view(reg, &name).await.ok_or_else(|| unknown(&n))?;
            return Ok(response::json(StatusCode::OK, &v));
        }
        _ => return Err(AdminError::invalid("a JSON body is needed")),
    };
    let deleting = matches!(change, RepoChange::Delete(_));
    let created = matches!(change, RepoChange::Create(_));
    let name = reg
        .control
        .change(reg, change, actor)
        .await
        .map_err(change_error)?;
    if deleting {
        return Ok(response::status(StatusCode::NO_CONTENT));
    }
    let v = view(reg, &name).await.unwrap_or(Value::Null);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(response::json(status, &v))
}

/// A change refused, as the API says it: `400` for a bad entry (naming the key), `409` for a
/// clash with another repository or a process holding the port, `404` for no such name.
pub(super) fn change_error(e: ChangeError) -> AdminError {
    match e {
        ChangeError::Invalid { .. } | ChangeError::Build(_) | ChangeError::Ports(_) => {
            AdminError::invalid(e.to_string())
        }
        ChangeError::Conflict(m) => AdminError::conflict(m),
        ChangeError::NotFound { .. } => AdminError::not_found(e.to_string()),
        ChangeError::Store(e) => AdminError::internal(e),
    }
}

fn unknown(name: &str) -> AdminError {
    AdminError::not_found(format!("no repository named {name:?}"))
}

fn known(reg: &Registry, name: &str) -> Result<RepoName, AdminError> {
    name.parse::<RepoName>()
        .ok()
        .filter(|n| reg.repos().contains_key(n))
        .ok_or_else(|| unknown(name))
}

/// `GET /api/v1/certificates`: each direct-HTTPS connector's certificate (subject, names,
/// validity, days left). What the open connector serves comes from its resolver, with the last
/// reload's result; a connector not open (yet) is described from its file, or why it cannot be.
pub(super) async fn certificates(reg: &Registry) -> AdminResult {
    let live = reg.control.certificates().await;
    let mut out = Vec::new();
    for (name, entry) in reg.repos().iter() {
        let Some(https) = entry
            .config
            .connector
            .as_ref()
            .and_then(|c| c.https.as_ref())
        else {
            continue;
        };
        let cert = &https.files.cert;
        let served = live
            .iter()
            .find(|e| e.listener == name.as_str() && e.sni.is_empty());
        let info = match served.and_then(|e| e.info.clone()) {
            Some(i) => Ok(i),
            None => std::fs::read_to_string(cert)
                .map_err(|e| e.to_string())
                .and_then(|pem| berth_certs::describe(&pem).map_err(|e| e.to_string())),
        };
        let mut v = json!({
            "repository": name.as_str(),
            "listen": https.listen.to_string(),
            "cert_file": cert.display().to_string(),
            "serving": served.is_some(),
        });
        if let Some(e) = served {
            v["source"] = json!(e.source.as_str());
            v["last_reload"] = json!(e.last_reload);
            v["last_reload_error"] = json!(e.last_reload_error);
        }
        match info {
            Ok(i) => {
                v["subject"] = json!(i.subject);
                v["issuer"] = json!(i.issuer);
                v["names"] = json!(i.sans);
                v["not_before"] = json!(i.not_before);
                v["not_after"] = json!(i.not_after);
                v["days_left"] = json!(i.days_left);
            }
            Err(e) => v["error"] = json!(e),
        }
        out.push(v);
    }
    Ok(response::json(StatusCode::OK, &Value::Array(out)))
}
