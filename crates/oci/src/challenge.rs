//! `WWW-Authenticate` challenges as registries send them (RFC 7235 auth-params, as the Docker
//! token specification uses them): `Basic realm="…"`, and `Bearer realm="…",service="…",
//! scope="…"` for the token flow of Docker Hub, ghcr.io and quay.io.

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: Option<String>, service: Option<String> },
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// The challenge a registry's `WWW-Authenticate` value names: Bearer when it offers one (the
/// token flow is preferred, as Docker's client does), else Basic. `None` for a scheme Berth
/// cannot answer, or a Bearer challenge without a realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut basic = None;
    for (scheme, params) in challenges(header) {
        let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(realm) = get("realm") {
                return Some(Challenge::Bearer { realm, service: get("service"), scope: get("scope") });
            }
        } else if scheme.eq_ignore_ascii_case("basic") && basic.is_none() {
            basic = Some(Challenge::Basic { realm: get("realm"), service: get("service") });
        }
    }
    basic
}

/// The challenges of a header value: (scheme, [(name, value)]).
fn challenges(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // A token followed by `=` is a parameter of the current challenge; otherwise a scheme.
        let token_end = rest.find(|c: char| c == '=' || c == ',' || c.is_whitespace()).unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start();
        if token.is_empty() {
            rest = after.strip_prefix(',').unwrap_or(after).trim_start();
            if rest.len() == after.len() {
                // Neither a token nor a separator: nothing more can be read.
                break;
            }
            continue;
        }
        if let Some(value_start) = after.strip_prefix('=')
            && !out.is_empty()
        {
            let value_start = value_start.trim_start();
            let (value, remaining) = if let Some(quoted) = value_start.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end.min(quoted.len())..])
            } else {
                let end = value_start.find(|c: char| c == ',' || c.is_whitespace()).unwrap_or(value_start.len());
                (value_start[..end].to_string(), &value_start[end..])
            };
            out.last_mut().expect("a challenge is open").1.push((token.to_string(), value));
            let remaining = remaining.trim_start();
            rest = remaining.strip_prefix(',').unwrap_or(remaining).trim_start();
        } else {
            out.push((token.to_string(), Vec::new()));
            rest = after;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_hubs_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            parse_challenge(h),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
    }

    #[test]
    fn reads_basic_challenges_with_and_without_parameters() {
        assert_eq!(
            parse_challenge(r#"Basic realm="https://x.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#),
            Some(Challenge::Basic {
                realm: Some("https://x.dkr.ecr.us-east-1.amazonaws.com/".into()),
                service: Some("ecr.amazonaws.com".into()),
            })
        );
        assert_eq!(parse_challenge("basic"), Some(Challenge::Basic { realm: None, service: None }));
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic { realm: Some("Registry Realm".into()), service: None })
        );
    }

    #[test]
    fn prefers_bearer_and_reads_escapes_and_bare_values() {
        let h = r#"Basic realm="a, b", Bearer realm=https://t.example/token, service="say \"hi\"""#;
        assert_eq!(
            parse_challenge(h),
            Some(Challenge::Bearer {
                realm: "https://t.example/token".into(),
                service: Some("say \"hi\"".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        for h in [
            "",
            "Negotiate",
            "Bearer service=\"x\"",
            "Digest realm=\"x\"",
            ",,,",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
        ] {
            let parsed = parse_challenge(h);
            assert!(
                parsed.is_none() || matches!(&parsed, Some(Challenge::Bearer { realm, .. }) if realm == "unterminated"),
                "{h}: {parsed:?}"
            );
        }
    }
}
