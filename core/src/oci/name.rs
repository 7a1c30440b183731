//! Repository and image names.
//!
//! The spec grammar for a name is
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
//! A name that passes it contains no `..`, no empty component and nothing but `[a-z0-9._/-]`,
//! which is what makes it safe to use as a relative path in storage.
//!
//! Two kinds of name exist in Berth: a [`RepoName`] names a Berth repository (one component,
//! because on the main port it is the first path component), and an [`ImageName`] names an image
//! inside one (any depth; the spec sets no limit and neither do we, only a length cap).

use std::fmt;
use std::str::FromStr;

/// Longest image name accepted. Distribution and Docker use the same bound.
pub const MAX_NAME_LEN: usize = 255;

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {0} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong(usize),
    #[error("name component {0:?} does not match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*")]
    BadComponent(String),
    #[error("repository name {0:?} must be a single path component")]
    Nested(String),
}

/// Checks one path component against the grammar.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+".
        let start = i;
        let sep = b[i];
        while i < b.len() && b[i] == sep {
            i += 1;
        }
        let run = i - start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        // A separator must be followed by an alphanumeric, not by another separator.
        if !ok || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// A validated image name such as `library/alpine` or `team/app/api`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName(String);

impl ImageName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Splits off the first component: `(first, rest)`; `rest` is `None` for a one-component name.
    pub fn split_first(&self) -> (&str, Option<ImageName>) {
        match self.0.split_once('/') {
            Some((first, rest)) => (first, Some(ImageName(rest.to_owned()))),
            None => (&self.0, None),
        }
    }

    /// `prefix/self`, for names addressed through the main port.
    pub fn prefixed(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            self.0.clone()
        } else {
            format!("{prefix}/{}", self.0)
        }
    }
}

impl FromStr for ImageName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.len()));
        }
        if let Some(bad) = s.split('/').find(|c| !valid_component(c)) {
            return Err(NameError::BadComponent(bad.to_owned()));
        }
        Ok(ImageName(s.to_owned()))
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A validated Berth repository name: one component of the name grammar.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RepoName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.contains('/') {
            return Err(NameError::Nested(s.to_owned()));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.len()));
        }
        if !valid_component(s) {
            return Err(NameError::BadComponent(s.to_owned()));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_spec_examples() {
        for ok in [
            "a",
            "library/alpine",
            "a/b/c/d/e/f/g/h/i/j/k",
            "my-app",
            "my--app",
            "my__app",
            "my_app.v2",
            "0",
        ] {
            assert!(ok.parse::<ImageName>().is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "-a",
            "a-",
            "a___b",
            "a..b",
            "a._b",
            "_a",
            "a/_layers",
            "a%2fb",
            "a\0b",
        ] {
            assert!(
                bad.parse::<ImageName>().is_err(),
                "{bad:?} should be invalid"
            );
        }
        assert!("x".repeat(256).parse::<ImageName>().is_err());
    }

    #[test]
    fn repo_names_are_single_components() {
        assert!("docker-hosted".parse::<RepoName>().is_ok());
        assert!(matches!(
            "a/b".parse::<RepoName>(),
            Err(NameError::Nested(_))
        ));
    }

    /// A regex equivalent of the spec grammar, used as the oracle.
    const GRAMMAR: &str =
        "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$";

    proptest! {
        #[test]
        fn generated_valid_names_parse(s in GRAMMAR.trim_start_matches('^').trim_end_matches('$')) {
            if s.len() <= MAX_NAME_LEN {
                prop_assert!(s.parse::<ImageName>().is_ok(), "{:?}", s);
            }
        }

        #[test]
        fn accepted_names_are_path_safe(s in "[a-z0-9._/-]{1,40}") {
            if let Ok(n) = s.parse::<ImageName>() {
                prop_assert!(n.as_str().split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
                prop_assert!(!n.as_str().starts_with('/'));
            }
        }

        #[test]
        fn split_first_round_trips(s in "[a-z]{1,5}(/[a-z]{1,5}){0,4}") {
            let n: ImageName = s.parse().unwrap();
            let (first, rest) = n.split_first();
            let rebuilt = match rest { Some(r) => r.prefixed(first), None => first.to_owned() };
            prop_assert_eq!(rebuilt, s);
        }
    }
}
