//! HTTP byte ranges: the `Range` header on blob GET (RFC 9110) and the `Content-Range` header
//! on chunked upload PATCH (the distribution spec's `<start>-<end>` form).

/// An inclusive byte range `[start, end]` within a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a `Range` header asks of a blob of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: serve the whole blob with 200. Malformed and multi-range headers land
    /// here too, as RFC 9110 allows a server to ignore them.
    Full,
    /// Serve this part with 206.
    Partial(ByteRange),
    /// Answer 416 with `Content-Range: bytes */<size>`.
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(h) = header else { return RangeRequest::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return RangeRequest::Full };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeRequest::Full };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) { None } else { s.parse().ok() }
    };
    if a.is_empty() {
        // suffix range: the last N bytes
        let Some(n) = num(b) else { return RangeRequest::Full };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        let n = n.min(size);
        return RangeRequest::Partial(ByteRange { start: size - n, end: size - 1 });
    }
    let Some(start) = num(a) else { return RangeRequest::Full };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match num(b) {
            Some(e) if e >= start => e,
            _ => return RangeRequest::Full,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(ByteRange { start, end: end.min(size - 1) })
}

/// A chunk's declared position, from `Content-Range: <start>-<end>` (also accepting the RFC form
/// `bytes <start>-<end>/<total|*>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
}

impl ContentRange {
    /// How many bytes the range covers; `None` when that is not a number (`0-18446744073709551615`).
    pub fn byte_count(&self) -> Option<u64> {
        self.end.checked_sub(self.start)?.checked_add(1)
    }
}

pub fn parse_content_range(header: &str) -> Option<ContentRange> {
    let s = header.trim();
    let s = s.strip_prefix("bytes ").or_else(|| s.strip_prefix("bytes=")).unwrap_or(s);
    let s = s.split_once('/').map_or(s, |(r, _)| r);
    let (a, b) = s.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    (end >= start).then_some(ContentRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: u64, e: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start: s, end: e })
    }

    #[test]
    fn range_forms() {
        assert_eq!(parse_range(None, 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=500-1499"), 2000), p(500, 1499));
        assert_eq!(parse_range(Some("bytes=500-"), 2000), p(500, 1999));
        assert_eq!(parse_range(Some("bytes=-500"), 2000), p(1500, 1999));
        assert_eq!(parse_range(Some("bytes=-5000"), 2000), p(0, 1999));
        assert_eq!(parse_range(Some("bytes=0-99999"), 2000), p(0, 1999));
        assert_eq!(parse_range(Some("bytes=2000-"), 2000), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 2000), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 2000), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 2000), RangeRequest::Full);
        assert_eq!(parse_range(Some("items=0-1"), 2000), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 2000), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=+1-2"), 2000), RangeRequest::Full);
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(parse_content_range("0-99"), Some(ContentRange { start: 0, end: 99 }));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some(ContentRange { start: 100, end: 199 }));
        assert_eq!(parse_content_range("9-1"), None);
        assert_eq!(parse_content_range("0-99").and_then(|r| r.byte_count()), Some(100));
        assert_eq!(parse_content_range("0-18446744073709551615").and_then(|r| r.byte_count()), None);
        assert_eq!(parse_content_range("5-18446744073709551615").and_then(|r| r.byte_count()), Some(u64::MAX - 4));
        assert_eq!(parse_content_range("x-1"), None);
        assert_eq!(parse_content_range(""), None);
    }

    proptest! {
        #[test]
        fn partial_ranges_stay_inside_the_blob(size in 0u64..10_000, a in 0u64..20_000, b in 0u64..20_000, suffix in any::<bool>()) {
            let h = if suffix { format!("bytes=-{a}") } else { format!("bytes={a}-{b}") };
            if let RangeRequest::Partial(r) = parse_range(Some(&h), size) {
                prop_assert!(r.start <= r.end && r.end < size);
            }
        }
    }
}
