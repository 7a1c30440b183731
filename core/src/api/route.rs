//! Turns a request path into a [`Route`].
//!
//! Image names contain `/`, so the path is parsed from the right: the fixed suffixes
//! (`/manifests/<ref>`, `/blobs/<digest>`, `/blobs/uploads/<id>`, `/tags/list`,
//! `/referrers/<digest>`) are matched first and whatever precedes them is the name, with no limit
//! on its depth. Names and references are returned raw; handlers validate them so that each gets
//! its own spec error (`NAME_INVALID`, `DIGEST_INVALID`, ...). Percent-escapes are not decoded: no
//! valid name, tag or digest contains `%`, so an escaped `/` or `.` simply fails validation.

/// A parsed V2/V1 request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: &'a str },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: &'a str, reference: &'a str },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: &'a str, digest: &'a str },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: &'a str },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: &'a str, id: &'a str },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: &'a str, digest: &'a str },
    /// `/v1/_ping`
    V1Ping,
    /// `/v1/search`
    V1Search,
    /// Any other `/v1/...` path.
    V1Other,
    /// A `/v2/...` path that matches nothing.
    V2Unknown,
    /// Not a registry path at all.
    NotRegistry,
}

/// Parses `path` (without the query string).
pub fn parse(path: &str) -> Route<'_> {
    if let Some(rest) = path.strip_prefix("/v1/") {
        return match rest {
            "_ping" => Route::V1Ping,
            "search" => Route::V1Search,
            _ => Route::V1Other,
        };
    }
    if path == "/v1" {
        return Route::V1Other;
    }
    let rest = match path {
        "/v2" | "/v2/" => return Route::Base,
        _ => match path.strip_prefix("/v2/") {
            Some(rest) => rest,
            None => return Route::NotRegistry,
        },
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return nonempty(name, |name| Route::Tags { name });
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return nonempty(name, |name| Route::UploadStart { name });
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Route::V2Unknown;
    };
    if last.is_empty() {
        return Route::V2Unknown;
    }
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return nonempty(name, |name| Route::Upload { name, id: last });
    }
    if let Some(name) = head.strip_suffix("/manifests") {
        return nonempty(name, |name| Route::Manifest {
            name,
            reference: last,
        });
    }
    if let Some(name) = head.strip_suffix("/blobs") {
        return nonempty(name, |name| Route::Blob { name, digest: last });
    }
    if let Some(name) = head.strip_suffix("/referrers") {
        return nonempty(name, |name| Route::Referrers { name, digest: last });
    }
    Route::V2Unknown
}

impl Route<'_> {
    /// The methods this endpoint answers; anything else is 405 with this list in `Allow`.
    pub fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Manifest { .. } => &["GET", "HEAD", "PUT", "DELETE"],
            Route::Blob { .. } => &["GET", "HEAD", "DELETE"],
            Route::UploadStart { .. } => &["POST"],
            Route::Upload { .. } => &["GET", "PATCH", "PUT", "DELETE"],
            Route::Base
            | Route::Catalog
            | Route::Tags { .. }
            | Route::Referrers { .. }
            | Route::V1Ping
            | Route::V1Search
            | Route::V1Other
            | Route::V2Unknown
            | Route::NotRegistry => &["GET", "HEAD"],
        }
    }
}

/// Methods of RFC 9110 plus PATCH; anything else is 501 Not Implemented.
pub fn known_method(m: &http::Method) -> bool {
    matches!(
        m.as_str(),
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "TRACE" | "CONNECT"
    )
}

fn nonempty<'a>(name: &'a str, f: impl FnOnce(&'a str) -> Route<'a>) -> Route<'a> {
    if name.is_empty() {
        Route::V2Unknown
    } else {
        f(name)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(parse("/v2/"), Route::Base);
        assert_eq!(parse("/v2"), Route::Base);
        assert_eq!(parse("/v2/_catalog"), Route::Catalog);
        assert_eq!(parse("/v2/a/b/tags/list"), Route::Tags { name: "a/b" });
        assert_eq!(
            parse("/v2/a/manifests/latest"),
            Route::Manifest {
                name: "a",
                reference: "latest"
            }
        );
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:00"),
            Route::Blob {
                name: "a/b",
                digest: "sha256:00"
            }
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/"),
            Route::UploadStart { name: "a" }
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads"),
            Route::UploadStart { name: "a" }
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/xyz"),
            Route::Upload {
                name: "a",
                id: "xyz"
            }
        );
        assert_eq!(
            parse("/v2/a/referrers/sha256:00"),
            Route::Referrers {
                name: "a",
                digest: "sha256:00"
            }
        );
        assert_eq!(parse("/v1/_ping"), Route::V1Ping);
        assert_eq!(parse("/v1/search"), Route::V1Search);
        assert_eq!(parse("/v1/repositories/x/images"), Route::V1Other);
        assert_eq!(parse("/v2/a"), Route::V2Unknown);
        assert_eq!(parse("/v2/manifests/x"), Route::V2Unknown);
        assert_eq!(parse("/health"), Route::NotRegistry);
    }

    #[test]
    fn names_may_contain_keywords() {
        assert_eq!(
            parse("/v2/manifests/blobs/tags/manifests/v1"),
            Route::Manifest {
                name: "manifests/blobs/tags",
                reference: "v1"
            }
        );
        assert_eq!(
            parse("/v2/x/blobs/uploads/blobs/sha256:1"),
            Route::Blob {
                name: "x/blobs/uploads",
                digest: "sha256:1"
            }
        );
    }

    proptest! {
        #[test]
        fn deep_names_round_trip(name in "[a-z]{1,4}(/[a-z]{1,4}){0,30}", reference in "[a-z0-9]{1,10}") {
            let path = format!("/v2/{name}/manifests/{reference}");
            prop_assert_eq!(parse(&path), Route::Manifest { name: &name, reference: &reference });
        }

        #[test]
        fn never_panics(path in "\\PC{0,80}") {
            let _ = parse(&path);
        }
    }
}
