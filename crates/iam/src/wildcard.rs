//! IAM's wildcards: `*` matches any run of characters (also none), `?` exactly one character;
//! everything else matches itself. A pattern is precompiled into pieces so that literal runs
//! compare with one `starts_with` instead of character by character.

/// A compiled pattern piece; `S` is `Box<str>` for pieces compiled once, or borrowed for pieces
/// built per request from substituted policy variables.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece<S = Box<str>> {
    Lit(S),
    Star,
    One,
}

/// Compiles a pattern in which every `*` and `?` is a wildcard.
pub(crate) fn compile(pattern: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    for c in pattern.chars() {
        match c {
            '*' | '?' => {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit).into()));
                }
                // `**` is the same as `*`; keeping one makes backtracking cheaper.
                if c == '?' {
                    pieces.push(Piece::One);
                } else if pieces.last() != Some(&Piece::Star) {
                    pieces.push(Piece::Star);
                }
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit.into()));
    }
    pieces
}

/// Equality for the short strings of policies (actions, ARN parts): an inline loop, where `==`
/// would call `memcmp` for every comparison.
#[inline]
pub(crate) fn eq_short(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn char_len_at(text: &str, i: usize) -> usize {
    text[i..].chars().next().map_or(1, char::len_utf8)
}

/// Whether `text` matches the pieces. Greedy with backtracking to the most recent star only,
/// which is enough for `*`/`?` globs: no recursion, and linear for the patterns policies use.
pub(crate) fn matches<S: AsRef<str>>(pieces: &[Piece<S>], text: &str) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    // (piece index after the star, text index the star currently absorbs up to)
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < pieces.len() {
            match &pieces[pi] {
                Piece::Star => {
                    if pi + 1 == pieces.len() {
                        return true;
                    }
                    star = Some((pi + 1, ti));
                    pi += 1;
                    continue;
                }
                Piece::Lit(lit) => {
                    let lit: &str = lit.as_ref();
                    if text[ti..].starts_with(lit) {
                        ti += lit.len();
                        pi += 1;
                        continue;
                    }
                }
                Piece::One => {
                    if ti < text.len() {
                        ti += char_len_at(text, ti);
                        pi += 1;
                        continue;
                    }
                }
            }
        } else if ti == text.len() {
            return true;
        }
        match star {
            Some((after, absorbed)) if absorbed < text.len() => {
                let next = absorbed + char_len_at(text, absorbed);
                star = Some((after, next));
                pi = after;
                ti = next;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{compile, matches};
    use proptest::prelude::*;

    fn glob(p: &str, t: &str) -> bool {
        matches(&compile(p), t)
    }

    /// The obvious recursive definition, exponential but clearly right.
    fn naive(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| naive(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && naive(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && naive(rest, &t[1..]),
        }
    }

    #[test]
    fn cases() {
        for (p, t, want) in [
            ("ecr:*", "ecr:batchgetimage", true),
            ("ecr:batch*", "ecr:batchgetimage", true),
            ("ecr:batch*", "ecr:getauthorizationtoken", false),
            ("ecr:?etdownloadurlforlayer", "ecr:getdownloadurlforlayer", true),
            ("ecr:?etdownloadurlforlayer", "ecr:etdownloadurlforlayer", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("*", "", true),
            ("?", "", false),
            ("", "", true),
            ("", "x", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("*ab", "aab", true),
            ("*a?", "aaa", true),
            ("a**b", "ab", true),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_naive_definition(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            let (pc, tc): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            prop_assert_eq!(glob(&p, &t), naive(&pc, &tc), "{} ~ {}", p, t);
        }

        #[test]
        fn agrees_on_multibyte_text(p in "[aé*?]{0,6}", t in "[aé]{0,8}") {
            let (pc, tc): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            prop_assert_eq!(glob(&p, &t), naive(&pc, &tc), "{} ~ {}", p, t);
        }
    }
}
