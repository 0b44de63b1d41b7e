//! Pull-through cache rules, decided without IO: which prefixes a rule may claim, how its
//! upstream URL is read (a bare `host[:port][/path]` is https; plain http only for loopback
//! hosts unless allowed), which rule a repository falls under, which upstream repository it
//! is fetched from (Docker Hub's `library/` for one-part names), and which secrets a rule may
//! name as its credential.

use std::net::IpAddr;

/// The prefix that claims every repository.
pub const ROOT: &str = "ROOT";

/// ECR's quota of pull-through cache rules per registry.
pub const MAX_RULES: usize = 50;

/// The secret-name prefix ECR requires of a rule's credential.
pub const CREDENTIAL_SECRET_PREFIX: &str = "ecr-pullthroughcache/";

/// Whether `prefix` is one a rule may claim: `ROOT`, or 2–30 characters of the repository
/// name grammar with an optional trailing `/`.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix == ROOT {
        return Ok(());
    }
    if !(2..=30).contains(&prefix.len()) {
        return Err(format!("the prefix {prefix:?} must be 2 to 30 characters long, or ROOT"));
    }
    let bare = prefix.strip_suffix('/').unwrap_or(prefix);
    berth_oci::validate_repository_name(bare).map_err(|_| {
        format!("the prefix {prefix:?} must be a repository name (lowercase letters, digits, . _ - and /), or ROOT")
    })
}

/// A prefix as rules are stored and matched: without its trailing `/`.
pub fn normalize_prefix(prefix: &str) -> &str {
    prefix.strip_suffix('/').unwrap_or(prefix)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

/// An upstream registry as a rule names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: String,
    /// A path under which the registry's `/v2/` lives (`""`, or `/mirror`), no trailing `/`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamUrlError {
    #[error("the upstream registry URL {0:?} is not a valid URL: {1}")]
    Invalid(String, &'static str),
    #[error("the upstream registry URL {0:?} uses plain http, which is allowed only for loopback hosts")]
    PlainHttp(String),
}

impl UpstreamUrl {
    /// Reads a rule's `upstreamRegistryUrl`: `https://host[:port][/path]`, a bare
    /// `host[:port][/path]` (https), or `http://…` for a loopback host (or any host when
    /// `allow_plain_http`).
    pub fn parse(url: &str, allow_plain_http: bool) -> Result<Self, UpstreamUrlError> {
        let invalid = |why| UpstreamUrlError::Invalid(url.to_string(), why);
        let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if url.contains("://") {
            return Err(invalid("only https:// and http:// are supported"));
        } else {
            (Scheme::Https, url)
        };
        if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it needs a host and no spaces"));
        }
        if rest.contains(['?', '#', '@']) {
            return Err(invalid("no query, fragment or credentials belong in it"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let host = host_of(authority).ok_or_else(|| invalid("the host or port is not valid"))?;
        if scheme == Scheme::Http && !allow_plain_http && !is_loopback(host) {
            return Err(UpstreamUrlError::PlainHttp(url.to_string()));
        }
        Ok(UpstreamUrl { scheme, authority: authority.to_ascii_lowercase(), path: path.to_string() })
    }

    /// The base every API path is appended to: `https://host[:port][/path]`.
    pub fn base(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        format!("{scheme}://{}{}", self.authority, self.path)
    }

    /// Whether this is Docker Hub, whose one-part names live under `library/`.
    pub fn is_docker_hub(&self) -> bool {
        let host = host_of(&self.authority).unwrap_or_default();
        matches!(host, "registry-1.docker.io" | "docker.io" | "index.docker.io")
    }
}

/// The host of `host[:port]` (`[v6]:port` too), if both parts are well formed.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().ok().is_none_or(|p| p == 0)
    {
        return None;
    }
    let label_ok =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let ok = host.parse::<IpAddr>().is_ok() || (!host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok));
    ok.then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The rule a repository falls under: the longest prefix it starts with (`<prefix>/…`), else
/// `ROOT` if there is such a rule.
pub fn matching_rule<'a>(prefixes: impl IntoIterator<Item = &'a str>, repository: &str) -> Option<&'a str> {
    let mut best: Option<&str> = None;
    for p in prefixes {
        let p_norm = normalize_prefix(p);
        let hit = if p == ROOT {
            best.is_none()
        } else {
            repository.strip_prefix(p_norm).is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
                && best.is_none_or(|b| b == ROOT || normalize_prefix(b).len() < p_norm.len())
        };
        if hit {
            best = Some(p);
        }
    }
    best
}

/// The upstream repository a pull of `repository` under the rule `(prefix, upstream_prefix)`
/// fetches: `<upstream_prefix>/<rest>` (no prefix for `ROOT` or none), with Docker Hub's
/// `library/` before a one-part name. `None` when the repository is not under the prefix.
pub fn upstream_repository(
    prefix: &str,
    upstream_prefix: Option<&str>,
    repository: &str,
    docker_hub: bool,
) -> Option<String> {
    let rest = if prefix == ROOT {
        repository
    } else {
        repository.strip_prefix(normalize_prefix(prefix))?.strip_prefix('/')?
    };
    if rest.is_empty() {
        return None;
    }
    let name = match upstream_prefix.map(normalize_prefix) {
        None | Some(ROOT) | Some("") => rest.to_string(),
        Some(up) => format!("{up}/{rest}"),
    };
    Some(if docker_hub && !name.contains('/') { format!("library/{name}") } else { name })
}

/// Why a rule may not name a secret as its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialRefusal {
    /// Not a Secrets Manager secret ARN under `ecr-pullthroughcache/`.
    NotACacheSecret,
    /// A secret of another account or region: the registry cannot read it.
    Elsewhere,
}

/// Whether a rule of `account` in `region` may name `arn` as its credential.
pub fn check_credential_arn(arn: &str, region: &str, account: &str) -> Result<(), CredentialRefusal> {
    let Some(rest) = arn.strip_prefix("arn:aws:secretsmanager:") else {
        return Err(CredentialRefusal::NotACacheSecret);
    };
    let Some((region_account, name)) = rest.split_once(":secret:") else {
        return Err(CredentialRefusal::NotACacheSecret);
    };
    if !name.starts_with(CREDENTIAL_SECRET_PREFIX) || name.len() == CREDENTIAL_SECRET_PREFIX.len() {
        return Err(CredentialRefusal::NotACacheSecret);
    }
    if region_account != format!("{region}:{account}") {
        return Err(CredentialRefusal::Elsewhere);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_root_or_short_repository_names() {
        for ok in ["ROOT", "docker-hub", "ghcr", "team/cache", "quay/", "a1"] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "Docker", "x".repeat(31).as_str(), "-hub", "hub//x", "a b"] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_prefix("quay/"), "quay");
    }

    #[test]
    fn a_bare_host_is_https_and_plain_http_only_for_loopback() {
        let u = UpstreamUrl::parse("registry-1.docker.io", false).unwrap();
        assert_eq!((u.base(), u.is_docker_hub()), ("https://registry-1.docker.io".to_string(), true));
        let u = UpstreamUrl::parse("https://Harbor.example.com:8443/mirror/", false).unwrap();
        assert_eq!(u.base(), "https://harbor.example.com:8443/mirror");
        assert_eq!(UpstreamUrl::parse("http://127.0.0.1:5001", false).unwrap().base(), "http://127.0.0.1:5001");
        assert!(UpstreamUrl::parse("http://localhost:5001", false).is_ok());
        assert!(UpstreamUrl::parse("http://[::1]:5001", false).is_ok());
        assert_eq!(
            UpstreamUrl::parse("http://registry.example.com", false),
            Err(UpstreamUrlError::PlainHttp("http://registry.example.com".into()))
        );
        assert!(UpstreamUrl::parse("http://registry.example.com", true).is_ok());
        for bad in
            ["", "ftp://x.io", "https://", "x.io:0", "x.io:99999", "a b.io", "https://u:p@x.io", "x.io?q=1", "x_y.io"]
        {
            assert!(matches!(UpstreamUrl::parse(bad, true), Err(UpstreamUrlError::Invalid(..))), "{bad:?}");
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_root_catches_the_rest() {
        let rules = ["ROOT", "hub", "hub/team", "ghcr/"];
        assert_eq!(matching_rule(rules, "hub/team/app"), Some("hub/team"));
        assert_eq!(matching_rule(rules, "hub/other"), Some("hub"));
        assert_eq!(matching_rule(rules, "ghcr/org/tool"), Some("ghcr/"));
        assert_eq!(matching_rule(rules, "hubx/app"), Some("ROOT"), "a prefix is whole components");
        assert_eq!(matching_rule(["hub"], "hub"), None, "the prefix alone names no repository");
        assert_eq!(matching_rule(["hub"], "mine/app"), None);
    }

    #[test]
    fn names_map_to_the_upstream_with_docker_hubs_library() {
        assert_eq!(upstream_repository("docker-hub", None, "docker-hub/nginx", true).as_deref(), Some("library/nginx"));
        assert_eq!(
            upstream_repository("docker-hub", None, "docker-hub/library/nginx", true).as_deref(),
            Some("library/nginx")
        );
        assert_eq!(
            upstream_repository("hub", Some("mirror"), "hub/team/app", false).as_deref(),
            Some("mirror/team/app")
        );
        assert_eq!(upstream_repository("hub", Some("ROOT"), "hub/app", false).as_deref(), Some("app"));
        assert_eq!(upstream_repository("ROOT", None, "team/app", false).as_deref(), Some("team/app"));
        assert_eq!(upstream_repository("hub", None, "other/app", false), None);
        assert_eq!(upstream_repository("hub", None, "hub", false), None);
    }

    #[test]
    fn a_credential_is_a_cache_secret_of_the_same_account_and_region() {
        let ok = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub-AbCdEf";
        assert_eq!(check_credential_arn(ok, "us-east-1", "123456789012"), Ok(()));
        assert_eq!(check_credential_arn(ok, "eu-west-1", "123456789012"), Err(CredentialRefusal::Elsewhere));
        assert_eq!(check_credential_arn(ok, "us-east-1", "210987654321"), Err(CredentialRefusal::Elsewhere));
        let other = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hub-AbCdEf";
        assert_eq!(check_credential_arn(other, "us-east-1", "123456789012"), Err(CredentialRefusal::NotACacheSecret));
        assert_eq!(
            check_credential_arn("arn:aws:s3:::bucket", "us-east-1", "1"),
            Err(CredentialRefusal::NotACacheSecret)
        );
    }
}
