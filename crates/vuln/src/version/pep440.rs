//! Python package versions, ordered and normalized per PEP 440 (via the `pep440_rs` crate).
//!
//! Order: epoch, then release (trailing zeros ignored: `1.0 == 1.0.0`), with dev releases
//! before pre-releases before the release before post-releases
//! (`1.0.dev0 < 1.0a1 < 1.0b1 < 1.0rc1 < 1.0 < 1.0.post1`), then the local label
//! (`1.0 < 1.0+local`). Parsing accepts PEP 440's normalization forms (`v1.0`, `1.0-1`,
//! `1.0alpha1`, `1.0-RC1`, ...). Unparseable strings fall back to [`super::generic`].

use std::cmp::Ordering;
use std::str::FromStr;

pub use pep440_rs::Version;

/// Parses a version (surrounding whitespace ignored).
pub fn parse(v: &str) -> Option<Version> {
    Version::from_str(v.trim()).ok()
}

/// Compares two versions per PEP 440.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => super::generic::compare(a, b),
    }
}

/// Whether `v` parses as a PEP 440 version (in any of its accepted spellings).
pub fn is_valid(v: &str) -> bool {
    parse(v).is_some()
}

/// The normalized spelling of `v` (`1.0-RC1` → `1.0rc1`), if it parses.
pub fn normalize(v: &str) -> Option<String> {
    parse(v).map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn release_phases() {
        let chain =
            ["1.0.dev0", "1.0a1", "1.0a2.dev1", "1.0a2", "1.0b1", "1.0rc1", "1.0", "1.0+local.1", "1.0.post1", "1.1"];
        for pair in chain.windows(2) {
            assert_eq!(compare(pair[0], pair[1]), Less, "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn epochs_and_normalization() {
        assert_eq!(compare("1!0.1", "2.0"), Greater);
        assert_eq!(compare("1.0.0", "1.0"), Equal);
        assert_eq!(compare("v1.0", "1.0"), Equal);
        assert_eq!(compare("1.0-RC1", "1.0rc1"), Equal);
        assert_eq!(compare("1.0alpha1", "1.0a1"), Equal);
        assert_eq!(compare("1.0-1", "1.0.post1"), Equal);
        assert_eq!(compare("1.10", "1.9"), Greater);
        assert_eq!(normalize("1.0-RC1").as_deref(), Some("1.0rc1"));
        assert_eq!(normalize("1.0.0.Post2").as_deref(), Some("1.0.0.post2"));
        assert!(is_valid("2024.10.1"));
        assert!(!is_valid("1.0-foo-bar"));
    }
}
