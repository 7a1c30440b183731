//! `Range` (blob downloads) and `Content-Range` (chunked uploads) headers.
//!
//! Downloads take one `bytes=` range in any of its three forms; a multi-range request is served
//! whole, which RFC 9110 permits. Uploads use the OCI form `<start>-<end>` (inclusive), and the
//! RFC form `bytes <start>-<end>/<total>` some clients send is accepted too.

/// A parsed download range, before it is applied to a blob size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` or `bytes=a-` (end `None`).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// The outcome of applying a `Range` header to a blob of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Serve everything (no header, or one we ignore).
    Full,
    /// Serve `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// A `Range` header that is not valid `bytes=` syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed Range header")]
pub struct MalformedRange;

/// Parses a `Range` header. `None` means "ignore it and serve the whole blob" (absent,
/// multi-range, or another unit); `Err` means malformed, which RFC 9110 also lets us ignore but
/// which we answer with 416 so that a client bug is visible.
pub fn parse_range(header: &str) -> Result<Option<ByteRange>, MalformedRange> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.trim().split_once('-').ok_or(MalformedRange)?;
    let num = |s: &str| -> Result<u64, MalformedRange> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(MalformedRange);
        }
        s.parse().map_err(|_| MalformedRange)
    };
    if a.is_empty() {
        return Ok(Some(ByteRange::Suffix(num(b)?)));
    }
    let start = num(a)?;
    let end = if b.is_empty() { None } else { Some(num(b)?) };
    if end.is_some_and(|e| e < start) {
        return Err(MalformedRange);
    }
    Ok(Some(ByteRange::From { start, end }))
}

impl ByteRange {
    /// Resolves against a blob of `size` bytes.
    pub fn resolve(self, size: u64) -> RangeOutcome {
        match self {
            ByteRange::From { start, end } => {
                if start >= size {
                    return RangeOutcome::Unsatisfiable;
                }
                let end = end.map_or(size - 1, |e| e.min(size - 1));
                RangeOutcome::Partial { start, end }
            }
            ByteRange::Suffix(0) => RangeOutcome::Unsatisfiable,
            ByteRange::Suffix(n) => {
                if size == 0 {
                    return RangeOutcome::Unsatisfiable;
                }
                RangeOutcome::Partial {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
    }
}

/// Parses an upload `Content-Range`, returning the inclusive `(start, end)`.
pub fn parse_content_range(header: &str) -> Option<(u64, u64)> {
    let s = header.trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let s = s.split_once('/').map_or(s, |(r, _total)| r);
    let (a, b) = s.split_once('-')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (start, end): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    // `end == u64::MAX` would make the chunk length `end - start + 1` overflow (audit:
    // `0-18446744073709551615`); no real chunk is that long.
    (end >= start && end < u64::MAX).then_some((start, end))
}

/// The length of an inclusive `(start, end)` from [`parse_content_range`] (cannot overflow).
pub fn chunk_len((start, end): (u64, u64)) -> u64 {
    end.saturating_sub(start).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn download_ranges() {
        let r = |h: &str| parse_range(h).unwrap().unwrap().resolve(100);
        assert_eq!(r("bytes=0-9"), RangeOutcome::Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=90-"), RangeOutcome::Partial { start: 90, end: 99 });
        assert_eq!(
            r("bytes=90-1000"),
            RangeOutcome::Partial { start: 90, end: 99 }
        );
        assert_eq!(r("bytes=-10"), RangeOutcome::Partial { start: 90, end: 99 });
        assert_eq!(
            r("bytes=-1000"),
            RangeOutcome::Partial { start: 0, end: 99 }
        );
        assert_eq!(r("bytes=100-"), RangeOutcome::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6"), Ok(None));
        assert_eq!(parse_range("items=0-1"), Ok(None));
        for bad in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=-1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(bad), Err(MalformedRange), "{bad}");
        }
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, 199)));
        for bad in [
            "",
            "5-1",
            "-1",
            "a-b",
            "1-",
            "-1-2",
            "0-99999999999999999999",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_range_lengths_cannot_overflow() {
        assert_eq!(parse_content_range("0-18446744073709551615"), None);
        let r = parse_content_range("0-18446744073709551614").unwrap();
        assert_eq!(chunk_len(r), u64::MAX);
        assert_eq!(chunk_len(parse_content_range("5-5").unwrap()), 1);
    }

    proptest! {
        #[test]
        fn parsed_content_ranges_have_a_length(a: u64, b: u64) {
            if let Some(r) = parse_content_range(&format!("{a}-{b}")) {
                prop_assert!(r.1.checked_sub(r.0).and_then(|d| d.checked_add(1)).is_some());
            }
        }

        #[test]
        fn partial_is_within_size(start in 0u64..200, len in 0u64..200, size in 1u64..150) {
            let h = format!("bytes={}-{}", start, start + len);
            if let RangeOutcome::Partial { start: s, end: e } = parse_range(&h).unwrap().unwrap().resolve(size) {
                prop_assert!(s <= e && e < size);
            }
        }

        #[test]
        fn never_panics(h in "\\PC{0,60}") {
            if let Ok(Some(r)) = parse_range(&h) { let _ = r.resolve(10); let _ = r.resolve(0); }
            let _ = parse_content_range(&h);
        }

        #[test]
        fn content_range_round_trips(a in 0u64..u64::MAX / 2, n in 0u64..1000) {
            prop_assert_eq!(parse_content_range(&format!("{}-{}", a, a + n)), Some((a, a + n)));
        }
    }
}
