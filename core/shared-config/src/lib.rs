//! What `core.yaml` and `proxy.yaml` share, so the two files behave alike for operators:
//! - [`Source`]: reads a file and parses YAML into a raw serde struct (the only caller of
//!   `serde_yaml` in either process), with errors that name the file, the key and the reason;
//!   paths in a file are taken relative to the file's directory;
//! - [`Duration`]: durations written the same way in both files — `90s`, `30m`, `24h`, `7d`,
//!   `250ms`, or a bare number of seconds.

mod bytesize;
mod duration;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use bytesize::{parse_bytes, ByteSize};
pub use duration::{parse_duration, Duration};

/// A configuration error: `<file>: <key>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// A config file being read: its name for errors and its directory for relative paths.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: String,
    pub base: PathBuf,
}

impl Source {
    pub fn new(file: impl Into<String>, base: impl Into<PathBuf>) -> Source {
        Source {
            file: file.into(),
            base: base.into(),
        }
    }

    /// Reads `path`; returns its text and the source to parse it with.
    pub fn read(path: &Path) -> Result<(String, Source), ConfigError> {
        let source = Source::new(
            path.display().to_string(),
            path.parent().unwrap_or(Path::new(".")),
        );
        let text = std::fs::read_to_string(path).map_err(|e| source.err("(file)", e))?;
        Ok((text, source))
    }

    /// An error about `key` in this file.
    pub fn err(&self, key: impl Into<String>, reason: impl ToString) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    /// A path as written in the file: absolute, or relative to the file's directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    /// Parses YAML into `T`; an error names the key path serde was at.
    pub fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                "(top level)".to_owned()
            } else {
                path
            };
            // serde_yaml repeats the path in its message; say it once.
            let reason = e.into_inner().to_string();
            let reason = reason
                .strip_prefix(&format!("{key}: "))
                .map(str::to_owned)
                .unwrap_or(reason);
            self.err(key, reason)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        wait: Option<Duration>,
        #[allow(dead_code)]
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        every: Duration,
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let s = Source::new("x.yaml", "/etc/berth");
        let r: Raw = s.parse("wait: 30m\n").unwrap();
        assert_eq!(r.wait.unwrap().get().as_secs(), 1800);
        let e = s.parse::<Raw>("inner: { every: soon }\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.key.as_str()), ("x.yaml", "inner.every"));
        assert!(e.reason.contains("soon"), "{e}");
        let e = s.parse::<Raw>("wiat: 1s\n").unwrap_err();
        assert!(e.reason.contains("wiat"), "{e}");
        assert_eq!(s.resolve("data"), PathBuf::from("/etc/berth/data"));
        assert_eq!(s.resolve("/var/x"), PathBuf::from("/var/x"));
    }
}
