//! Distribution's notification envelope: `{"events": [Event, ...]}` with the field names and
//! casing Distribution's consumers parse (`mediaType`, `useragent`, `instanceID`).

use serde::Serialize;

use super::Action;

/// The envelope's content type.
pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub action: Action,
    pub target: TargetInfo,
    pub request: RequestInfo,
    pub actor: Actor,
    pub source: SourceInfo,
}

/// What the event is about: a manifest or a blob.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// The same as `size` (Distribution sends both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    pub repository: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// Mounts: the repository the blob came from.
    #[serde(rename = "fromRepository", skip_serializing_if = "String::is_empty")]
    pub from_repository: String,
}

/// The request that caused the event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestInfo {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub useragent: String,
}

/// Who caused it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Actor {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Which registry instance sent it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceInfo {
    pub addr: String,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

impl Event {
    /// A new event with a random id and the current time; `source` is set by the notifier.
    pub fn new(action: Action, target: TargetInfo, request: RequestInfo, actor: &str) -> Event {
        let id: u128 = rand::random();
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Event {
            id: format!("{id:032x}"),
            timestamp,
            action,
            target,
            request,
            actor: Actor {
                name: if actor == "anonymous" {
                    String::new()
                } else {
                    actor.to_owned()
                },
            },
            source: SourceInfo::default(),
        }
    }
}

/// The POST body for a batch.
pub fn envelope(events: &[std::sync::Arc<Event>]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        events: Vec<&'a Event>,
    }
    let body = Envelope {
        events: events.iter().map(|e| e.as_ref()).collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}
