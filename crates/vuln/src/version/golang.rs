//! Go module versions: SemVer with a mandatory leading `v`, pseudo-versions for untagged
//! commits, and `+incompatible` for pre-modules major versions.
//!
//! A pseudo-version is a SemVer pre-release, so plain SemVer precedence already orders it
//! right: `v0.0.0-20210101000000-abcdef123456` sorts before `v0.0.0`, and
//! `v1.2.4-0.20210101000000-abcdef123456` (a commit after `v1.2.3`) between `v1.2.3` and
//! `v1.2.4`. `+incompatible` is build metadata and does not affect the order. OSV's Go
//! records write versions without the `v`; both spellings compare.

use std::cmp::Ordering;

/// Compares two Go module versions (with or without the leading `v`).
pub fn compare(a: &str, b: &str) -> Ordering {
    super::semver::compare(a, b)
}

/// Whether `v` is a canonical Go module version: `v` + strict SemVer whose only allowed build
/// metadata is `+incompatible` (and only for major versions 2 and up).
pub fn is_valid(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let Ok(parsed) = ::semver::Version::parse(rest) else {
        return false;
    };
    match parsed.build.as_str() {
        "" => true,
        "incompatible" => parsed.major >= 2,
        _ => false,
    }
}

/// Whether `v` is a pseudo-version: `vX.0.0-yyyymmddhhmmss-abcdefabcdef`,
/// `vX.Y.Z-pre.0.yyyymmddhhmmss-abcdefabcdef` or `vX.Y.(Z+1)-0.yyyymmddhhmmss-abcdefabcdef`.
pub fn is_pseudo_version(v: &str) -> bool {
    let Some(parsed) = v.strip_prefix('v').and_then(|r| ::semver::Version::parse(r).ok()) else {
        return false;
    };
    let pre = parsed.pre.as_str();
    // The pre-release ends in "<14-digit timestamp>-<revision>".
    let Some((head, revision)) = pre.rsplit_once('-') else {
        return false;
    };
    if revision.is_empty() || !revision.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let (base, timestamp) = match head.rsplit_once('.') {
        Some((base, ts)) => (Some(base), ts),
        None => (None, head),
    };
    if timestamp.len() != 14 || !timestamp.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    match base {
        // vX.0.0-yyyymmddhhmmss-hash: no base tag at all.
        None => parsed.minor == 0 && parsed.patch == 0,
        // vX.Y.(Z+1)-0.ts-hash, or vX.Y.Z-pre.0.ts-hash.
        Some(base) => base == "0" || base.ends_with(".0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn pseudo_versions_order_around_tags() {
        assert_eq!(compare("v0.0.0-20210101000000-abcdef123456", "v0.0.0"), Less);
        assert_eq!(compare("v0.0.0-20210101000000-abcdef123456", "v0.0.0-20220101000000-123456abcdef"), Less);
        assert_eq!(compare("v1.2.3", "v1.2.4-0.20210101000000-abcdef123456"), Less);
        assert_eq!(compare("v1.2.4-0.20210101000000-abcdef123456", "v1.2.4"), Less);
        assert_eq!(compare("v1.2.4-rc.1.0.20210101000000-abcdef123456", "v1.2.4-rc.1"), Greater);
        assert_eq!(compare("v2.0.0+incompatible", "2.0.0"), Equal);
        assert_eq!(compare("v1.10.0", "1.9.0"), Greater);
    }

    #[test]
    fn canonical_forms() {
        assert!(is_valid("v1.2.3"));
        assert!(is_valid("v2.3.0+incompatible"));
        assert!(!is_valid("v1.3.0+incompatible"));
        assert!(!is_valid("1.2.3"));
        assert!(!is_valid("v1.2"));
        assert!(is_pseudo_version("v0.0.0-20210101000000-abcdef123456"));
        assert!(is_pseudo_version("v1.2.4-0.20210101000000-abcdef123456"));
        assert!(is_pseudo_version("v1.2.4-rc.1.0.20210101000000-abcdef123456"));
        assert!(!is_pseudo_version("v1.2.3"));
        assert!(!is_pseudo_version("v1.2.3-rc.1"));
        assert!(!is_pseudo_version("v1.2.3-20210101000000-abcdef123456"));
    }
}
