//! SemVer 2.0 precedence (via the `semver` crate), tolerant of the shapes seen in the wild.
//!
//! Comparison ignores build metadata, as SemVer §10 requires. Parsing accepts a leading `v`,
//! surrounding whitespace, leading zeros and fewer than three core components (`1.2` is read
//! as `1.2.0`); strings that still do not parse fall back to the natural ordering of
//! [`super::generic`].

use std::cmp::Ordering;

use ::semver::Version;

/// Parses a version leniently (see the module docs).
pub fn parse(v: &str) -> Option<Version> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    if let Ok(parsed) = Version::parse(v) {
        return Some(parsed);
    }
    let split = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let mut numbers: Vec<&str> =
        parts.iter().map(|p| p.trim_start_matches('0')).map(|p| if p.is_empty() { "0" } else { p }).collect();
    numbers.resize(3, "0");
    Version::parse(&format!("{}{rest}", numbers.join("."))).ok()
}

/// Compares two versions by SemVer precedence.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a.cmp_precedence(&b),
        _ => super::generic::compare(a, b),
    }
}

/// Whether `v` is strictly SemVer 2.0 (an optional leading `v` aside).
pub fn is_valid(v: &str) -> bool {
    Version::parse(v.strip_prefix('v').unwrap_or(v)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn prerelease_precedence_from_the_spec() {
        // SemVer §11's example chain.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for pair in chain.windows(2) {
            assert_eq!(compare(pair[0], pair[1]), Less, "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(compare("0.0.0-0", "0.0.0"), Less);
        assert_eq!(compare("1.9.0", "1.10.0"), Less);
    }

    #[test]
    fn build_metadata_and_leniency() {
        assert_eq!(compare("1.0.0+build.1", "1.0.0+build.2"), Equal);
        assert_eq!(compare("v1.2.3", "1.2.3"), Equal);
        assert_eq!(compare("1.2", "1.2.0"), Equal);
        assert_eq!(compare("1.2-rc1", "1.2.0"), Less);
        assert_eq!(compare("01.2.3", "1.2.3"), Equal);
        assert!(is_valid("1.2.3-rc.1+b5"));
        assert!(is_valid("v1.2.3"));
        assert!(!is_valid("1.2"));
        assert!(!is_valid("1.2.3.4"));
    }
}
