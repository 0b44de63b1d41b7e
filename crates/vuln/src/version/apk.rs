//! Alpine (apk-tools) versions: `digits{.digits}[letter]{_suffix[digits]}[~hash][-rN]`, ordered
//! as apk-tools' `apk_version_compare` orders them.
//!
//! The version is read as a sequence of typed tokens. Two versions compare token by token
//! while the token types agree; the first differing value decides. When the types diverge,
//! a pre-release suffix (`_alpha`, `_beta`, `_pre`, `_rc`) makes its side older, and otherwise
//! the side that still has a "more significant" token (digits before letter before suffix
//! before revision before end) is newer: `1.2.3 < 1.2.3.1`, `1.0 < 1.0a`, `1.0 < 1.0_p1`,
//! `1.0 < 1.0-r1`.

use std::cmp::Ordering;

/// Token types, in the order of the grammar. The derived order is relied upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNumber,
    CommitHash,
    Revision,
    End,
    Invalid,
}

/// Suffix ranks; below [`SUFFIX_NONE`] is a pre-release, above it a post-release.
const SUFFIXES: [(&str, u8); 9] =
    [("alpha", 1), ("beta", 2), ("pre", 3), ("rc", 4), ("cvs", 6), ("svn", 7), ("git", 8), ("hg", 9), ("p", 10)];
const SUFFIX_NONE: u8 = 5;

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a [u8],
    suffix: u8,
}

struct Lexer<'a> {
    rest: &'a [u8],
    last: Kind,
}

impl<'a> Lexer<'a> {
    fn new(v: &'a str) -> Self {
        Lexer { rest: v.as_bytes(), last: Kind::InitialDigit }
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let n = self.rest.iter().take_while(|&&c| pred(c)).count();
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        taken
    }

    fn token(&mut self, kind: Kind, text: &'a [u8]) -> Token<'a> {
        let suffix = if kind == Kind::Suffix {
            SUFFIXES.iter().find(|(s, _)| s.as_bytes() == text).map_or(0, |&(_, r)| r)
        } else {
            0
        };
        // Every token but the end needs text, and a suffix must be a known one.
        let kind = if (text.is_empty() && kind != Kind::End) || (kind == Kind::Suffix && suffix == 0) {
            Kind::Invalid
        } else {
            kind
        };
        self.last = kind;
        Token { kind, text, suffix }
    }

    fn first(&mut self) -> Token<'a> {
        let digits = self.take_while(|c| c.is_ascii_digit());
        self.token(Kind::InitialDigit, digits)
    }

    fn next(&mut self) -> Token<'a> {
        let last = self.last;
        let Some(&c) = self.rest.first() else {
            return self.token(Kind::End, &[]);
        };
        match c {
            b'a'..=b'z' if last <= Kind::Digit => {
                let (letter, rest) = self.rest.split_at(1);
                self.rest = rest;
                self.token(Kind::Letter, letter)
            }
            b'.' | b'0'..=b'9' if last <= Kind::Digit || (c != b'.' && last == Kind::Suffix) => {
                if c == b'.' {
                    self.rest = &self.rest[1..];
                }
                let kind = if last == Kind::Suffix { Kind::SuffixNumber } else { Kind::Digit };
                let digits = self.take_while(|c| c.is_ascii_digit());
                self.token(kind, digits)
            }
            b'_' if last <= Kind::SuffixNumber => {
                self.rest = &self.rest[1..];
                let name = self.take_while(|c| c.is_ascii_lowercase());
                self.token(Kind::Suffix, name)
            }
            b'~' if last < Kind::CommitHash => {
                self.rest = &self.rest[1..];
                let hash = self.take_while(|c| c.is_ascii_hexdigit());
                self.token(Kind::CommitHash, hash)
            }
            b'-' if last < Kind::Revision && self.rest.get(1) == Some(&b'r') => {
                self.rest = &self.rest[2..];
                let digits = self.take_while(|c| c.is_ascii_digit());
                self.token(Kind::Revision, digits)
            }
            _ => self.token(Kind::Invalid, &[]),
        }
    }
}

fn cmp_tokens(a: &Token<'_>, b: &Token<'_>) -> Ordering {
    match a.kind {
        // apk compares a later numeric component as a string when either side has a leading
        // zero ("1.01" < "1.1"), as Gentoo does.
        Kind::Digit if a.text.first() == Some(&b'0') || b.text.first() == Some(&b'0') => a.text.cmp(b.text),
        Kind::InitialDigit | Kind::Digit | Kind::SuffixNumber | Kind::Revision => {
            super::generic::cmp_numeric(a.text, b.text)
        }
        Kind::Suffix => a.suffix.cmp(&b.suffix),
        _ => a.text.cmp(b.text),
    }
}

/// Compares two Alpine package versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim(), b.trim());
    let (mut la, mut lb) = (Lexer::new(a), Lexer::new(b));
    let (mut ta, mut tb) = (la.first(), lb.first());
    while ta.kind == tb.kind && ta.kind < Kind::End {
        let ord = cmp_tokens(&ta, &tb);
        if ord != Ordering::Equal {
            return ord;
        }
        ta = la.next();
        tb = lb.next();
    }
    if ta.kind == tb.kind {
        return Ordering::Equal;
    }
    if ta.kind == Kind::Suffix && ta.suffix < SUFFIX_NONE {
        return Ordering::Less;
    }
    if tb.kind == Kind::Suffix && tb.suffix < SUFFIX_NONE {
        return Ordering::Greater;
    }
    // The side whose next token is "later" in the grammar (or the end) is older.
    tb.kind.cmp(&ta.kind)
}

/// Whether `v` is a well-formed apk version.
pub fn is_valid(v: &str) -> bool {
    let mut lexer = Lexer::new(v);
    let mut token = lexer.first();
    while token.kind < Kind::End {
        token = lexer.next();
    }
    token.kind == Kind::End
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn suffixes_around_the_release() {
        assert_eq!(compare("1.2.3_rc1", "1.2.3"), Less);
        assert_eq!(compare("1.2.3", "1.2.3_p1"), Less);
        assert_eq!(compare("1.2.3_rc1", "1.2.3_p1"), Less);
        assert_eq!(compare("1.0_alpha", "1.0_beta"), Less);
        assert_eq!(compare("1.0_beta2", "1.0_beta10"), Less);
        assert_eq!(compare("1.0_pre1", "1.0_rc1"), Less);
        assert_eq!(compare("1.0_git20240101", "1.0_p1"), Less);
        assert_eq!(compare("1.0_cvs", "1.0_svn"), Less);
        assert_eq!(compare("1.0_rc1", "1.0_rc1_p1"), Less);
        assert_eq!(compare("1.0_rc1_alpha", "1.0_rc1"), Less);
    }

    #[test]
    fn revisions() {
        assert_eq!(compare("1.0-r1", "1.0-r10"), Less);
        assert_eq!(compare("1.0-r2", "1.0-r10"), Less);
        assert_eq!(compare("1.0", "1.0-r0"), Less);
        assert_eq!(compare("1.0-r9", "1.0.1-r0"), Less);
        assert_eq!(compare("1.1.1g-r0", "1.1.1k-r0"), Less);
        assert_eq!(compare("3.0.12-r1", "3.0.12-r1"), Equal);
    }

    #[test]
    fn letters_and_components() {
        assert_eq!(compare("1.0a", "1.0"), Greater);
        assert_eq!(compare("1.0a", "1.0b"), Less);
        assert_eq!(compare("1.0z", "1.0.1"), Less);
        assert_eq!(compare("1.2.3", "1.2.3.1"), Less);
        assert_eq!(compare("1.10", "1.9"), Greater);
        assert_eq!(compare("2", "10"), Less);
        // Leading zeros in later components compare as strings.
        assert_eq!(compare("1.01", "1.1"), Less);
        assert_eq!(compare("1.001", "1.01"), Less);
        assert_eq!(compare("1.0_rc1", "1.0a"), Less);
    }

    /// Cases from apk-tools' own `test/version.data`.
    #[test]
    fn apk_tools_test_data() {
        let cases = [
            ("2.34", Greater, "0.1.0_alpha"),
            ("23_foo", Greater, "4_beta"),
            ("1.0", Less, "1.0bc"),
            ("1.1", Greater, "1.1_alpha1"),
            ("1.06-r6", Less, "006"),
            ("3.0.20060720", Less, "20060720"),
            ("0.7.18-r2", Less, "0.17-r6"),
            ("2.01.01_alpha10", Greater, "0.94"),
            ("1.2.07.8", Less, "1.2.12.04"),
            ("1.02.07", Less, "1.02.10-r1"),
            ("0.1.0_alpha_pre2", Less, "0.1.0_alpha"),
            ("2.12r-r4", Less, "2.12r-r5"),
            ("0.59s-r11", Less, "0.65"),
            ("1.0_p10-r0", Greater, "1.0_p9-r0"),
            ("1.3_pre1-r1", Less, "1.3.2"),
            ("4.5_p1-r1", Greater, "4.5_p1"),
            ("0.9.28.1", Less, "087-r1"),
            ("1.7", Less, "1.7b"),
            ("2.5.1-r8", Less, "2.5.1a-r1"),
            ("0.20070118", Less, "0.20070207_rc1"),
            ("1.0.0_pre20191002222144-r0", Less, "1.0.0_pre20210530193627-r0"),
            ("2.9.11_pre20051101-r3", Greater, "2.9.11_pre20051101"),
            ("1.3-r0", Less, "1.3.1-r0"),
            ("0.2.0-r1", Equal, "0.2.0-r1"),
        ];
        for (a, want, b) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn commit_hash_and_invalid() {
        assert_eq!(compare("1.0~abc", "1.0~abd"), Less);
        assert_eq!(compare("1.0", "1.0~abc"), Less);
        // A commit hash comes before the revision in the grammar, so it is the newer side.
        assert_eq!(compare("1.0~abc", "1.0-r1"), Greater);
        // Garbage sorts below anything well formed at the same point.
        assert_eq!(compare("1.0-foo", "1.0"), Less);
        assert!(is_valid("1.2.3_rc1-r4"));
        assert!(is_valid("0.9.8z-r0"));
        assert!(is_valid("1.0_p1_git20240101~deadbeef-r2"));
        assert!(!is_valid("1.0-foo"));
        assert!(!is_valid("1.0_bogus"));
        assert!(!is_valid("v1.0"));
        assert!(!is_valid("1.0ab"));
        assert!(!is_valid("1.7.5.-r1"));
        assert!(!is_valid(""));
    }
}
