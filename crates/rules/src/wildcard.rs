//! ECR's wildcard filters: `*` matches any run of characters (also none); everything else
//! matches itself.

pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Greedy matching with backtracking to the last star: linear in practice, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;
    use proptest::prelude::*;

    #[test]
    fn cases() {
        for (p, t, want) in [
            ("prod*", "prod-1", true),
            ("prod*", "prod", true),
            ("prod*", "dev-prod", false),
            ("*prod*", "dev-prod-1", true),
            ("v*.*.*", "v1.2.3", true),
            ("v*.*.*", "v1.2", false),
            ("latest", "latest", true),
            ("latest", "latest2", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(matches(p, t), want, "{p} ~ {t}");
        }
    }

    proptest! {
        #[test]
        fn a_pattern_without_stars_is_equality(p in "[a-z0-9.-]{0,8}", t in "[a-z0-9.-]{0,8}") {
            prop_assert_eq!(matches(&p, &t), p == t);
        }

        #[test]
        fn star_around_a_substring_matches(pre in "[a-z]{0,5}", mid in "[a-z]{0,5}", post in "[a-z]{0,5}") {
            let text = format!("{pre}{mid}{post}");
            let pattern = format!("*{mid}*");
            prop_assert!(matches(&pattern, &text));
        }
    }
}
