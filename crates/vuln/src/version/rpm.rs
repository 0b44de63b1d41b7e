//! RPM versions, `[epoch:]version[-release]`, ordered by epoch and then rpm's `rpmvercmp` on
//! the version and on the release.
//!
//! `rpmvercmp` reads alternating alphabetic and numeric segments, skipping any other
//! characters as separators. Numbers compare numerically and beat letters; `~` sorts before
//! everything (a pre-release marker, even before the end); `^` sorts after the end but before
//! any further segment (a post-release snapshot marker: `1.0 < 1.0^git1 < 1.0.1`).

use std::cmp::Ordering;

use super::generic::cmp_numeric;

/// An RPM EVR split into its parts (borrowed from the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evr<'a> {
    /// Epoch digits; `"0"` when absent.
    pub epoch: &'a str,
    /// The version.
    pub version: &'a str,
    /// The release; `None` when the string has no `-`.
    pub release: Option<&'a str>,
}

impl<'a> Evr<'a> {
    /// Splits `[epoch:]version[-release]`: the epoch is the digits before the first `:`, the
    /// release whatever follows the last `-`.
    pub fn split(evr: &'a str) -> Self {
        let s = evr.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) if e.bytes().all(|c| c.is_ascii_digit()) => (if e.is_empty() { "0" } else { e }, rest),
            _ => ("0", s),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v, Some(r)),
            None => (rest, None),
        };
        Evr { epoch, version, release }
    }
}

impl Ord for Evr<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        // A missing release compares as an empty one, which is older than any release; this
        // keeps the order total (rpm's dependency matching would instead ignore it).
        cmp_numeric(self.epoch.as_bytes(), other.epoch.as_bytes())
            .then_with(|| rpmvercmp(self.version, other.version))
            .then_with(|| rpmvercmp(self.release.unwrap_or(""), other.release.unwrap_or("")))
    }
}

impl PartialOrd for Evr<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two RPM `[epoch:]version[-release]` strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    Evr::split(a).cmp(&Evr::split(b))
}

/// Whether `v` is a plausible EVR: non-empty, a numeric epoch if any, and a version and
/// release made of alphanumerics and `. _ + ~ ^`.
pub fn is_valid(v: &str) -> bool {
    let evr = Evr::split(v);
    let part_ok = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || b"._+~^".contains(&c));
    v.trim() == v
        && v.split_once(':').is_none_or(|(e, _)| !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()))
        && part_ok(evr.version)
        && evr.release.is_none_or(part_ok)
}

/// rpm's segment comparison of one version or release string.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let is_sep = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    loop {
        while a.get(i).is_some_and(is_sep) {
            i += 1;
        }
        while b.get(j).is_some_and(is_sep) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca.is_none() && cb.is_none() {
            return Ordering::Equal;
        }
        // Tilde: whoever has it is older, unless both do.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // Caret: newer than the end of the other string, older than anything else there.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            // One side ran out: the one with something left is newer.
            return if ca.is_none() { Ordering::Less } else { Ordering::Greater };
        };
        // The segment type is decided by the first string; the other takes a segment of the
        // same type, which may be empty.
        let numeric = ca.is_ascii_digit();
        let in_segment = |c: &u8| if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() };
        let ei = i + a[i..].iter().take_while(|c| in_segment(c)).count();
        let ej = j + b[j..].iter().take_while(|c| in_segment(c)).count();
        if ej == j {
            // Different segment types: numbers are newer than letters.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let ord = if numeric { cmp_numeric(&a[i..ei], &b[j..ej]) } else { a[i..ei].cmp(&b[j..ej]) };
        if ord != Ordering::Equal {
            return ord;
        }
        i = ei;
        j = ej;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    /// A selection of the cases in rpm's own `tests/rpmvercmp.at`.
    #[test]
    fn rpm_test_suite_cases() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p10", Less),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("8", "xyz.4", Greater),
            ("6.0.rc1", "6.0", Greater),
            ("10b2", "10a1", Greater),
            ("1.0a", "1.0aa", Less),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("2_0", "2.0", Equal),
            ("a+", "a_", Equal),
            ("+", "_", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0^20160102", "1.0^20160101^git1", Greater),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), want, "rpmvercmp({a}, {b})");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "rpmvercmp({b}, {a})");
        }
    }

    #[test]
    fn evr() {
        assert_eq!(compare("1:1.0-1.el9", "2.0-1.el9"), Greater);
        assert_eq!(compare("0:1.0-1.el9", "1.0-1.el9"), Equal);
        assert_eq!(compare("1.0-1.el9", "1.0-1.el9_2"), Less);
        assert_eq!(compare("3.0.7-25.el9_3", "3.0.7-27.el9"), Less);
        assert_eq!(compare("1.0", "1.0-1"), Less);
        assert_eq!(compare("1.0~rc1-1", "1.0-1"), Less);
        assert_eq!(compare("1.0^git1-1", "1.0-1"), Greater);
    }

    #[test]
    fn validity() {
        assert!(is_valid("1:2.3.4-5.el9_2"));
        assert!(is_valid("1.0~rc1^git2"));
        assert!(!is_valid("x:1.0-1"));
        assert!(!is_valid("1.0-"));
        assert!(!is_valid(""));
    }
}
