//! Manifest references: a tag or a digest, as in `/v2/<name>/manifests/<reference>`.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. Safe as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a string is not a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
pub struct TagError(pub String);

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let head = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
        let valid = !b.is_empty()
            && b.len() <= 128
            && head(b[0])
            && b[1..].iter().all(|&x| head(x) || x == b'.' || x == b'-');
        if valid {
            Ok(Tag(s.to_owned()))
        } else {
            Err(TagError(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A manifest reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// Why a string is not a reference. A string with a `:` is judged as a digest, since tags
/// cannot contain one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Tag(#[from] TagError),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn tags_and_digests() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        assert!(matches!("_x.Y-1".parse(), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(d.parse(), Ok(Reference::Digest(_))));
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "..",
            "sha256:zz",
            &"a".repeat(129),
            "a b",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn valid_tags_round_trip(s in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}") {
            let r: Reference = s.parse().unwrap();
            prop_assert_eq!(r.to_string(), s);
        }

        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = s.parse::<Reference>();
        }
    }
}
