//! A scheme-free "natural" ordering: runs of digits compare as numbers, other runs as bytes.
//!
//! Used where an ecosystem has no known scheme, and as the fallback when a strict scheme
//! (SemVer, PEP 440) cannot parse one of its inputs, so that every comparison still answers.

use std::cmp::Ordering;

/// Compares two strings of ASCII digits as unbounded non-negative integers.
pub(crate) fn cmp_numeric(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let a = &a[strip(a)..];
    let b = &b[strip(b)..];
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Natural ordering of two version-like strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim().as_bytes(), b.trim().as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let a_digit = a[i].is_ascii_digit();
        let b_digit = b[j].is_ascii_digit();
        let run = |s: &[u8], from: usize, digit: bool| {
            from + s[from..].iter().take_while(|c| c.is_ascii_digit() == digit).count()
        };
        let (ei, ej) = (run(a, i, a_digit), run(b, j, b_digit));
        let ord = match (a_digit, b_digit) {
            (true, true) => cmp_numeric(&a[i..ei], &b[j..ej]),
            // A number sorts after a word in the same position ("1.0" > "1.a").
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => a[i..ei].cmp(&b[j..ej]),
        };
        if ord != Ordering::Equal {
            return ord;
        }
        i = ei;
        j = ej;
    }
    (a.len() - i).cmp(&(b.len() - j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        assert_eq!(compare("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare("1.02", "1.2"), Ordering::Equal);
        assert_eq!(compare("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(compare("abc", "abd"), Ordering::Less);
        assert_eq!(cmp_numeric(b"0010", b"9"), Ordering::Greater);
    }
}
