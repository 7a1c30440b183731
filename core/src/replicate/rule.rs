//! A replication rule as the core holds it (config builds it; owned here): which repository,
//! which remote, which images and tags, where they land, when it runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::oci::RepoName;

/// Which way images go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Berth to the remote.
    Push,
    /// The remote into a hosted Berth repository.
    Pull,
}

/// How tags are chosen.
#[derive(Debug, Clone)]
pub enum TagFilter {
    /// `*` matches any run of characters.
    Glob(String),
    Regex(regex::Regex),
}

impl TagFilter {
    pub fn matches(&self, tag: &str) -> bool {
        match self {
            TagFilter::Glob(g) => crate::auth::glob(g, tag),
            TagFilter::Regex(r) => r.is_match(tag),
        }
    }

    /// As the config gave it.
    pub fn describe(&self) -> String {
        match self {
            TagFilter::Glob(g) => g.clone(),
            TagFilter::Regex(r) => format!("/{}/", r.as_str()),
        }
    }
}

/// The other registry.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Base URL without a trailing slash.
    pub url: String,
    pub username: Option<String>,
    /// Read at each run, so a rotated password needs no restart.
    pub password_file: Option<PathBuf>,
    /// A bearer token sent as is (a robot account's), read at each run.
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Connection set-up, and the wait for each answer's headers.
    pub timeout: Duration,
}

/// When a rule runs, beside a manual run (always possible).
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    /// After each push to a matching image and tag (push rules).
    pub on_push: bool,
    /// Every so often, counted across cores: a run is due when none started within it.
    pub schedule: Option<Duration>,
}

/// One `replication` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub direction: Direction,
    /// Read from (push) or written into (pull: hosted).
    pub repository: RepoName,
    pub remote: RemoteSettings,
    /// Glob over image names (Berth's for push, the remote's catalog for pull).
    pub images: String,
    pub tags: TagFilter,
    /// `{image}` is the source name; default the same name.
    pub destination: Option<String>,
    pub trigger: Trigger,
    /// Tags gone from the source are deleted at the destination.
    pub delete: bool,
}

impl Rule {
    /// The name `image` gets on the other side.
    pub fn destination_of(&self, image: &str) -> String {
        match &self.destination {
            Some(d) => d.replace("{image}", image),
            None => image.to_owned(),
        }
    }

    pub fn wants_image(&self, image: &str) -> bool {
        crate::auth::glob(&self.images, image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(destination: Option<&str>, tags: TagFilter) -> Rule {
        Rule {
            name: "r".into(),
            direction: Direction::Push,
            repository: "hosted".parse().unwrap(),
            remote: RemoteSettings {
                url: "https://dr.example".into(),
                username: None,
                password_file: None,
                token_file: None,
                ca_file: None,
                timeout: Duration::from_secs(5),
            },
            images: "team/*".into(),
            tags,
            destination: destination.map(str::to_owned),
            trigger: Trigger::default(),
            delete: false,
        }
    }

    #[test]
    fn names_and_filters() {
        let r = rule(Some("mirror/{image}"), TagFilter::Glob("v*".into()));
        assert_eq!(r.destination_of("team/app"), "mirror/team/app");
        assert!(r.wants_image("team/app") && !r.wants_image("other/app"));
        assert!(r.tags.matches("v1") && !r.tags.matches("latest"));
        let same = rule(
            None,
            TagFilter::Regex(regex::Regex::new("^v[0-9]+$").unwrap()),
        );
        assert_eq!(same.destination_of("team/app"), "team/app");
        assert!(same.tags.matches("v12") && !same.tags.matches("v1.2"));
    }
}
