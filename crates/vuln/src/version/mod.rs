//! Version orderings of the package ecosystems a scanner meets.
//!
//! Every scheme exposes `compare(a, b) -> Ordering` and `is_valid(v) -> bool`. Comparison is
//! total: a string a strict scheme cannot parse still gets an answer (a documented fallback),
//! because vulnerability data is messy and a panic or an error per odd version would be worse
//! than a best-effort order. [`Scheme`] dispatches to them by name.

pub mod apk;
pub mod dpkg;
pub mod generic;
pub mod golang;
pub mod maven;
pub mod pep440;
pub mod rpm;
pub mod semver;

use std::cmp::Ordering;

/// A version ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Debian and Ubuntu (`dpkg --compare-versions`).
    Dpkg,
    /// Alpine, Wolfi and Chainguard (apk-tools).
    Apk,
    /// Red Hat, Rocky Linux, AlmaLinux (rpmvercmp on epoch:version-release).
    Rpm,
    /// SemVer 2.0 precedence (crates.io, npm, and every `SEMVER` range).
    SemVer,
    /// PEP 440 (PyPI).
    Pep440,
    /// Go module versions (SemVer with a `v`, pseudo-versions).
    Go,
    /// Maven's ComparableVersion model.
    Maven,
    /// Natural ordering, for ecosystems without a known scheme.
    Generic,
}

impl Scheme {
    /// Compares two versions under this scheme.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::Dpkg => dpkg::compare(a, b),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Rpm => rpm::compare(a, b),
            Scheme::SemVer => semver::compare(a, b),
            Scheme::Pep440 => pep440::compare(a, b),
            Scheme::Go => golang::compare(a, b),
            Scheme::Maven => maven::compare(a, b),
            Scheme::Generic => generic::compare(a, b),
        }
    }

    /// Whether `v` is well formed under this scheme.
    pub fn is_valid(self, v: &str) -> bool {
        match self {
            Scheme::Dpkg => dpkg::is_valid(v),
            Scheme::Apk => apk::is_valid(v),
            Scheme::Rpm => rpm::is_valid(v),
            Scheme::SemVer => semver::is_valid(v),
            Scheme::Pep440 => pep440::is_valid(v),
            Scheme::Go => golang::is_valid(v),
            Scheme::Maven => maven::is_valid(v),
            Scheme::Generic => !v.trim().is_empty(),
        }
    }

    /// Whether `a` and `b` denote the same version (`1.0` and `1.0.0` under PEP 440).
    pub fn equal(self, a: &str, b: &str) -> bool {
        a == b || self.compare(a, b) == Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every scheme must be a consistent order on well-formed input: reflexive,
    /// antisymmetric and transitive, or sorting event lists would be meaningless.
    fn check_order(scheme: Scheme, a: &str, b: &str, c: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(scheme.compare(a, a), Ordering::Equal);
        prop_assert_eq!(scheme.compare(a, b), scheme.compare(b, a).reverse(), "antisymmetry {} {}", a, b);
        let mut v = [a, b, c];
        v.sort_by(|x, y| scheme.compare(x, y));
        prop_assert_ne!(scheme.compare(v[0], v[2]), Ordering::Greater, "transitivity {:?}", v);
        if scheme.compare(v[0], v[1]) == Ordering::Less || scheme.compare(v[1], v[2]) == Ordering::Less {
            prop_assert_eq!(scheme.compare(v[0], v[2]), Ordering::Less, "strict transitivity {:?}", v);
        }
        Ok(())
    }

    fn dpkg_version() -> impl Strategy<Value = String> {
        "([0-2]:)?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(~[a-z0-9]{1,3}|\\+[a-z]{1,2}[0-9]?|[a-c])?(-[0-9]{1,2}(\\+deb[0-9]{1,2}u[0-9])?(~[a-z0-9]{1,2})?)?"
    }

    fn apk_version() -> impl Strategy<Value = String> {
        "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}[a-c]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]?){0,2}(-r[0-9]{1,2})?"
    }

    fn rpm_version() -> impl Strategy<Value = String> {
        "([0-2]:)?[0-9]{1,2}(\\.[0-9a-c]{1,2}){0,2}(~[a-z0-9]{1,3}|\\^[a-z0-9]{1,3})?(-[0-9]{1,2}(\\.el[0-9](_[0-9])?)?)?"
    }

    fn semver_version() -> impl Strategy<Value = String> {
        "(0|[1-9][0-9]?)\\.(0|[1-9][0-9]?)\\.(0|[1-9][0-9]?)(-(alpha|beta|rc|0|[1-9])(\\.(0|[1-9]|x)){0,2})?(\\+build[0-9])?"
    }

    fn pep440_version() -> impl Strategy<Value = String> {
        "([1-2]!)?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}((a|b|rc)[0-9])?(\\.post[0-9])?(\\.dev[0-9])?(\\+[a-z0-9]{1,3})?"
    }

    fn maven_version() -> impl Strategy<Value = String> {
        "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}([.-](alpha|beta|rc|cr|snapshot|final|ga|sp|foo)?[0-9]?)?(-[0-9])?"
    }

    proptest! {
        #[test]
        fn dpkg_is_a_total_order(a in dpkg_version(), b in dpkg_version(), c in dpkg_version()) {
            check_order(Scheme::Dpkg, &a, &b, &c)?;
            prop_assert!(dpkg::is_valid(&a), "{} should be valid", a);
        }

        #[test]
        fn apk_is_a_total_order(a in apk_version(), b in apk_version(), c in apk_version()) {
            check_order(Scheme::Apk, &a, &b, &c)?;
            prop_assert!(apk::is_valid(&a), "{} should be valid", a);
        }

        #[test]
        fn rpm_is_a_total_order(a in rpm_version(), b in rpm_version(), c in rpm_version()) {
            check_order(Scheme::Rpm, &a, &b, &c)?;
        }

        #[test]
        fn semver_is_a_total_order(a in semver_version(), b in semver_version(), c in semver_version()) {
            check_order(Scheme::SemVer, &a, &b, &c)?;
            check_order(Scheme::Go, &format!("v{a}"), &b, &c)?;
        }

        #[test]
        fn pep440_is_a_total_order(a in pep440_version(), b in pep440_version(), c in pep440_version()) {
            check_order(Scheme::Pep440, &a, &b, &c)?;
            prop_assert!(pep440::is_valid(&a), "{} should be valid", a);
        }

        #[test]
        fn maven_is_a_total_order(a in maven_version(), b in maven_version(), c in maven_version()) {
            check_order(Scheme::Maven, &a, &b, &c)?;
        }

        #[test]
        fn generic_is_a_total_order(a in "[0-9a-z.~-]{0,8}", b in "[0-9a-z.~-]{0,8}", c in "[0-9a-z.~-]{0,8}") {
            check_order(Scheme::Generic, &a, &b, &c)?;
        }
    }

    const ALL: [Scheme; 8] = [
        Scheme::Dpkg,
        Scheme::Apk,
        Scheme::Rpm,
        Scheme::SemVer,
        Scheme::Pep440,
        Scheme::Go,
        Scheme::Maven,
        Scheme::Generic,
    ];

    proptest! {
        /// Versions come from untrusted data: every scheme answers for any input.
        #[test]
        fn comparators_never_panic(a in "(?s).{0,24}", b in "[0-9a-zA-Z.~^_+:!-]{0,16}") {
            for scheme in ALL {
                let _ = scheme.compare(&a, &b);
                let _ = scheme.compare(&b, &a);
                let _ = scheme.is_valid(&a);
                prop_assert_eq!(scheme.compare(&b, &b), Ordering::Equal);
            }
        }
    }

    #[test]
    fn scheme_dispatch() {
        assert_eq!(Scheme::Dpkg.compare("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(Scheme::Apk.compare("1.0_rc1", "1.0"), Ordering::Less);
        assert_eq!(Scheme::Rpm.compare("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(Scheme::Pep440.compare("1.0rc1", "1.0"), Ordering::Less);
        assert!(Scheme::Pep440.equal("1.0", "1.0.0"));
        assert!(!Scheme::SemVer.equal("1.0.0", "1.0.1"));
        assert!(Scheme::Go.is_valid("v1.2.3"));
        assert!(!Scheme::Generic.is_valid(" "));
    }
}
