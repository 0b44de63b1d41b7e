//! Debian package versions, `[epoch:]upstream_version[-debian_revision]`, ordered as the
//! Debian Policy Manual (section 5.6.12) and dpkg's `verrevcmp` describe.
//!
//! Each of upstream and revision is compared as alternating runs: a run of non-digits,
//! compared character by character where `~` sorts before everything (even the end of the
//! string), letters sort before non-letters; then a run of digits, compared numerically.

use std::cmp::Ordering;

use super::generic::cmp_numeric;

/// A Debian version split into its three parts (borrowed from the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebianVersion<'a> {
    /// The epoch digits; `"0"` when absent.
    pub epoch: &'a str,
    /// The upstream version.
    pub upstream: &'a str,
    /// The Debian revision; empty when absent (which dpkg orders like `"0"`).
    pub revision: &'a str,
}

impl<'a> DebianVersion<'a> {
    /// Splits a version leniently: the epoch is the digits before the first `:`, the
    /// revision whatever follows the last `-`.
    pub fn split(version: &'a str) -> Self {
        let v = version.trim();
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => (e, rest),
            _ => ("0", v),
        };
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        DebianVersion { epoch, upstream, revision }
    }
}

impl Ord for DebianVersion<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_numeric(self.epoch.as_bytes(), other.epoch.as_bytes())
            .then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| verrevcmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for DebianVersion<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two Debian versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    DebianVersion::split(a).cmp(&DebianVersion::split(b))
}

/// Whether `v` is a well-formed Debian version: an optional numeric epoch, an upstream part
/// that starts with a digit and holds only alphanumerics and `. + ~ -`, and a revision of
/// alphanumerics and `. + ~`.
pub fn is_valid(v: &str) -> bool {
    if v.is_empty() || v.trim() != v {
        return false;
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => (Some(e), rest),
        None => (None, v),
    };
    if let Some(e) = epoch
        && (e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, Some(r)),
        None => (rest, None),
    };
    let upstream_ok = upstream.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && upstream.bytes().all(|c| c.is_ascii_alphanumeric() || b".+~-".contains(&c));
    let revision_ok =
        revision.is_none_or(|r| !r.is_empty() && r.bytes().all(|c| c.is_ascii_alphanumeric() || b".+~".contains(&c)));
    upstream_ok && revision_ok
}

/// The weight of one character in a non-digit run; the end of the string (and a digit,
/// which ends the run) weighs 0.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit run. The loop only advances while both sides hold the same non-digit
        // character: a digit or the end weighs 0 and differs from any non-digit's weight.
        while a.get(i).is_some_and(|c| !c.is_ascii_digit()) || b.get(j).is_some_and(|c| !c.is_ascii_digit()) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run.
        let ei = i + a[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        let ej = j + b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        let ord = cmp_numeric(&a[i..ei], &b[j..ej]);
        if ord != Ordering::Equal {
            return ord;
        }
        i = ei;
        j = ej;
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn tilde_sorts_before_everything_even_the_end() {
        assert_eq!(compare("1.0~rc1", "1.0"), Less);
        assert_eq!(compare("1.0~~", "1.0~~a"), Less);
        assert_eq!(compare("1.0~~a", "1.0~"), Less);
        assert_eq!(compare("1.0~", "1.0"), Less);
        assert_eq!(compare("1.0", "1.0a"), Less);
        assert_eq!(compare("1.0~rc1", "1.0~rc2"), Less);
        assert_eq!(compare("2.30-1~bpo12+1", "2.30-1"), Less);
    }

    #[test]
    fn epochs_dominate() {
        assert_eq!(compare("1:0.9", "2.0"), Greater);
        assert_eq!(compare("0:2.0", "2.0"), Equal);
        assert_eq!(compare("2:1.0", "10:0.1"), Less);
    }

    #[test]
    fn revisions() {
        assert_eq!(compare("1.0-1", "1.0-1+deb12u1"), Less);
        assert_eq!(compare("1.0-1+deb12u1", "1.0-2"), Less);
        assert_eq!(compare("1.0", "1.0-0"), Equal);
        assert_eq!(compare("1.0-10", "1.0-9"), Greater);
        // The revision is what follows the *last* hyphen.
        assert_eq!(compare("1.0-beta-1", "1.0-beta-2"), Less);
        assert_eq!(compare("2.36-9+deb12u4", "2.36-9+deb12u10"), Less);
    }

    #[test]
    fn letters_before_non_letters_and_numbers_numerically() {
        assert_eq!(compare("1.0a", "1.0+"), Less);
        assert_eq!(compare("1.0+b1", "1.0.1"), Less); // '+' (299) vs '.' (302)
        assert_eq!(compare("1.10", "1.9"), Greater);
        assert_eq!(compare("1.010", "1.10"), Equal);
        assert_eq!(compare("7.88.1-10+deb12u5", "7.88.1-10+deb12u12"), Less);
    }

    #[test]
    fn validity() {
        assert!(is_valid("1:2.3.4-5+deb12u1"));
        assert!(is_valid("2.30~rc1-1"));
        assert!(is_valid("1.0-beta-1"));
        assert!(!is_valid("a1.0"));
        assert!(!is_valid("x:1.0"));
        assert!(!is_valid("1.0-"));
        assert!(!is_valid("1.0_1"));
        assert!(!is_valid(""));
    }
}
