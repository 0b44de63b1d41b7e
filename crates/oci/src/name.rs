//! The distribution spec's grammar for repository names and tags.

/// Maximum length of a repository name. The spec leaves it to registries; ECR allows 256.
pub const MAX_NAME_LEN: usize = 256;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
pub fn validate_repository_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("repository name must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("repository name is longer than {MAX_NAME_LEN} characters"));
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(format!(
                "invalid repository name {name:?}: component {component:?} must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*"
            ));
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or "-+"
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i >= b.len() || !alnum(b[i]) || i == start {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..].iter().all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(format!("invalid tag {tag:?}: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/ubuntu", "team/app/api", "a.b", "a_b", "a__b", "a---b", "0", "a1/b2/c3"] {
            assert!(validate_repository_name(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a.", "_a", "a b", "a/B", "a:b", "a/-b", "a._b"]
        {
            assert!(validate_repository_name(bad).is_err(), "{bad}");
        }
        assert!(validate_repository_name(&"a".repeat(256)).is_ok());
        assert!(validate_repository_name(&"a".repeat(257)).is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(validate_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "-a", "a/b", "a:b", "a+b", &"a".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }
}
