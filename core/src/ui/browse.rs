//! Browsing: repositories, images, tags, one manifest (platforms of an index; config and
//! layers of an image; referrers such as signatures and SBOMs), search. Every read is the
//! registry API's own call on the repository, with the viewer's read privilege checked.

use futures_util::StreamExt;
use http::StatusCode;
use serde_json::{json, Value};

use super::common::{client_host, human, readable};
use super::{content, overview, Ctx, PageError, PageResult};
use crate::oci::{Digest, ImageName, Reference, RepoName};
use crate::registry::RepoEntry;
use crate::storage::metadata::Page;

/// Lists are cut here; search narrows them.
const LIST_LIMIT: usize = 200;
/// Tags shown on an image page, each resolved to its digest.
const TAG_LIMIT: usize = 100;
/// Tag changes shown on an image page.
const HISTORY_SHOWN: usize = 20;
/// An image config larger than this is not read for the manifest page.
const CONFIG_LIMIT: u64 = 1 << 20;

/// The ports each repository listens on now (a configured port 0 is a real one here).
type Ports = std::collections::BTreeMap<RepoName, Vec<(std::net::SocketAddr, bool)>>;

/// How clients name this repository in `docker pull`: its connector's external URL, or this
/// host with the connector's port, or the main port's `host/repository` path.
fn pull_prefix(ctx: &Ctx<'_>, entry: &RepoEntry, ports: &Ports) -> String {
    let Some(c) = entry.config.connector.as_ref() else {
        return format!("{}/{}", client_host(ctx), entry.repo.name());
    };
    if let Some(u) = &c.external_url {
        return u
            .split_once("://")
            .map_or(u.as_str(), |(_, h)| h)
            .to_owned();
    }
    let port = ports
        .get(entry.repo.name())
        .and_then(|v| v.first())
        .map(|(a, _)| a.port());
    let host = client_host(ctx);
    let bare = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_owned(),
        _ => host,
    };
    match port {
        Some(p) => format!("{bare}:{p}"),
        None => bare,
    }
}

fn image_param(ctx: &Ctx<'_>) -> Result<ImageName, PageError> {
    let i = ctx.required("image")?;
    i.parse()
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, format!("image {i:?}: {e}")))
}

pub async fn home(ctx: &Ctx<'_>) -> PageResult {
    let ports = ctx.reg.control.listening().await;
    let mut repos = Vec::new();
    for e in ctx.reg.repos().values() {
        if !ctx.viewer.may_read(ctx.reg, e.repo.name()) {
            continue;
        }
        let host = e
            .config
            .connector
            .as_ref()
            .map(|_| pull_prefix(ctx, e, &ports));
        let mut row = overview::repo_figures(ctx, e).await;
        row["name"] = json!(e.repo.name().as_str());
        row["kind"] = json!(e.repo.kind());
        row["host"] = json!(host);
        repos.push(row);
    }
    let overview = match ctx.viewer.admin {
        true => overview::overview(ctx).await,
        false => Value::Null,
    };
    ctx.render(
        "home.html",
        json!({ "repos": repos, "main_host": client_host(ctx), "overview": overview }),
    )
}

pub async fn repository(ctx: &Ctx<'_>) -> PageResult {
    let entry = readable(ctx, ctx.required("name")?)?;
    let page = Page {
        after: None,
        limit: Some(LIST_LIMIT + 1),
    };
    let mut images: Vec<String> = entry
        .repo
        .images(&page)
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    let more = images.len() > LIST_LIMIT;
    images.truncate(LIST_LIMIT);
    let rows = overview::image_rows(ctx, &entry, &images).await;
    let figures = overview::repo_figures(ctx, &entry).await;
    ctx.render(
        "repository.html",
        json!({
            "repo": { "name": entry.repo.name().as_str(), "kind": entry.repo.kind() },
            "images": rows, "more": more, "figures": figures,
        }),
    )
}

pub async fn image(ctx: &Ctx<'_>) -> PageResult {
    let entry = readable(ctx, ctx.required("repo")?)?;
    let image = image_param(ctx)?;
    let page = Page {
        after: None,
        limit: Some(TAG_LIMIT + 1),
    };
    let mut names = entry.repo.tags(&image, &page).await?;
    let more = names.len() > TAG_LIMIT;
    names.truncate(TAG_LIMIT);
    let mut tags = Vec::new();
    for t in names {
        let Ok(reference) = t.parse::<Reference>() else {
            continue;
        };
        if let Ok(m) = entry.repo.manifest(&image, &reference).await {
            tags.push(
                json!({ "tag": t, "digest": m.digest.to_string(), "kind": kind_of(&m.media_type) }),
            );
        }
    }
    let history = history(ctx, &entry, &image, &tags).await;
    ctx.render(
        "image.html",
        json!({
            "repo": entry.repo.name().as_str(), "image": image.to_string(), "tags": tags,
            "more": more, "history": history,
            "may_delete": content::may_delete(ctx, &entry),
            "pull": format!("{}/{image}", pull_prefix(ctx, &entry, &ctx.reg.control.listening().await)),
        }),
    )
}

/// The image's latest tag changes, each with the digest a restore would point its tag at
/// when that differs from where the tag points now (for viewers who may restore).
async fn history(ctx: &Ctx<'_>, entry: &RepoEntry, image: &ImageName, tags: &[Value]) -> Value {
    if !content::may_restore(ctx, entry) {
        return Value::Null;
    }
    let ns = crate::storage::Namespace::new(entry.repo.name().clone(), image.clone());
    let events = crate::registry::content::history(ctx.reg, &ns, None, HISTORY_SHOWN)
        .await
        .unwrap_or_default();
    let now = |tag: &str| {
        tags.iter()
            .find(|t| t["tag"] == tag)
            .and_then(|t| t["digest"].as_str())
    };
    Value::Array(
        events
            .iter()
            .map(|e| {
                let target = e.digest.as_deref().or(e.previous.as_deref());
                let restore = target.filter(|d| now(&e.tag) != Some(*d));
                json!({
                    "tag": e.tag, "digest": e.digest, "previous": e.previous, "actor": e.actor,
                    "reason": e.reason, "at": super::common::when(e.at / 1000), "restore": restore,
                })
            })
            .collect(),
    )
}

fn kind_of(media_type: &str) -> &'static str {
    if media_type.contains("index") || media_type.contains("list") {
        "index"
    } else {
        "image"
    }
}

pub async fn manifest(ctx: &Ctx<'_>) -> PageResult {
    let entry = readable(ctx, ctx.required("repo")?)?;
    let image = image_param(ctx)?;
    let r = ctx.required("ref")?;
    let reference: Reference = r
        .parse()
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, format!("reference {r:?}: {e}")))?;
    let m = entry.repo.manifest(&image, &reference).await?;
    let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let referrers: Vec<Value> = entry
        .repo
        .referrers(&image, &m.digest)
        .await
        .unwrap_or_default()
        .iter()
        .map(|d| {
            json!({
                "artifact_type": d.artifact_type.clone().unwrap_or_else(|| d.media_type.clone()),
                "digest": d.digest, "size": human(u64::try_from(d.size).unwrap_or(0)),
            })
        })
        .collect();
    let sep = if matches!(reference, Reference::Digest(_)) {
        "@"
    } else {
        ":"
    };
    let mut data = json!({
        "repo": entry.repo.name().as_str(), "image": image.to_string(),
        "reference": r, "sep": sep, "digest": m.digest.to_string(),
        "media_type": m.media_type, "referrers": referrers,
        "may_delete": content::may_delete(ctx, &entry),
        "pull": format!("{}/{image}", pull_prefix(ctx, &entry, &ctx.reg.control.listening().await)),
    });
    if let Some(list) = doc["manifests"].as_array() {
        data["platforms"] = json!(list.iter().map(platform).collect::<Vec<_>>());
    }
    if let Some(layers) = doc["layers"].as_array() {
        let sizes: u64 = layers.iter().filter_map(|l| l["size"].as_u64()).sum();
        let config_size = doc["config"]["size"].as_u64().unwrap_or(0);
        data["total"] = json!(human(sizes + config_size + m.bytes.len() as u64));
        data["layers"] = json!(layers
            .iter()
            .map(|l| json!({
                "digest": l["digest"], "media_type": l["mediaType"],
                "size": human(l["size"].as_u64().unwrap_or(0)),
            }))
            .collect::<Vec<_>>());
        data["config"] = config(&entry, &image, &doc["config"]).await;
    }
    ctx.render("manifest.html", data)
}

fn platform(d: &Value) -> Value {
    let p = &d["platform"];
    let mut name = format!(
        "{}/{}",
        p["os"].as_str().unwrap_or("?"),
        p["architecture"].as_str().unwrap_or("?")
    );
    if let Some(v) = p["variant"].as_str() {
        name = format!("{name}/{v}");
    }
    if p.is_null() {
        name = d["artifactType"]
            .as_str()
            .unwrap_or("(no platform)")
            .to_owned();
    }
    json!({ "platform": name, "digest": d["digest"], "size": human(d["size"].as_u64().unwrap_or(0)) })
}

/// The image config's facts (platform, creation time, command), read from the blob.
async fn config(entry: &RepoEntry, image: &ImageName, desc: &Value) -> Value {
    let size = desc["size"].as_u64().unwrap_or(0);
    let mut v = json!({ "digest": desc["digest"], "size": human(size) });
    let Some(digest) = desc["digest"]
        .as_str()
        .and_then(|d| d.parse::<Digest>().ok())
    else {
        return v;
    };
    if size > CONFIG_LIMIT {
        return v;
    }
    let Ok(mut stream) = entry.repo.blob_read(image, &digest, 0, size).await else {
        return v;
    };
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        bytes.extend_from_slice(&chunk);
    }
    let c: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let (Some(os), Some(arch)) = (c["os"].as_str(), c["architecture"].as_str()) {
        v["platform"] = json!(format!("{os}/{arch}"));
    }
    v["created"] = c["created"].clone();
    if let Some(cmd) = c["config"]["Cmd"].as_array() {
        let words: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        v["cmd"] = json!(words.join(" "));
    }
    v
}

pub async fn search(ctx: &Ctx<'_>) -> PageResult {
    let q = ctx.param("q").unwrap_or_default().trim().to_owned();
    let mut hits = Vec::new();
    if !q.is_empty() {
        for e in ctx.reg.repos().values() {
            if !ctx.viewer.may_read(ctx.reg, e.repo.name()) {
                continue;
            }
            for image in e.repo.search(&q, LIST_LIMIT).await.unwrap_or_default() {
                hits.push(json!({ "repo": e.repo.name().as_str(), "image": image }));
            }
        }
    }
    hits.truncate(LIST_LIMIT);
    ctx.render("search.html", json!({ "q": q, "hits": hits }))
}
