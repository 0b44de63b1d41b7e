//! The public host (`--public-host`): what its `/v2/` serves and to whom. Pull URIs are
//! `<public host>/<alias>/<repository>`; anyone may read a public repository, signed in or
//! not; writing needs the `ecr-public:` actions ECR Public names; the anonymous catalog stays
//! closed. Anonymous pulls draw on a monthly byte allowance per source address, counted in the
//! metadata store behind the request (as pull times are), so every node and restart counts
//! each byte once.

use std::net::IpAddr;

use berth_oci::V2Route;

use super::{PublicRegistry, public_repository_key};
use crate::authz::UploadStart;
use crate::{Registry, RegistryError};

/// ECR Public's allowance for anonymous pulls: 500 GB a month per source.
pub const DEFAULT_ANONYMOUS_BYTES_PER_MONTH: u64 = 500_000_000_000;

/// How the public host is configured: its name, and the anonymous allowance.
#[derive(Debug, Clone)]
pub struct PublicHost {
    /// The host name clients use (a port, if given, is not compared).
    pub name: String,
    /// Bytes each source address may pull anonymously per calendar month (UTC).
    pub anonymous_bytes_per_month: u64,
}

impl PublicHost {
    /// Whether a request's `Host` (`name[:port]`) is the public host: the name part alone is
    /// compared (case-insensitively), so the private and public registries can share a
    /// listener and a port.
    pub fn serves(&self, request_host: &str) -> bool {
        host_name(request_host).eq_ignore_ascii_case(host_name(&self.name))
    }
}

/// `name` of `name[:port]`, `[v6]` of `[v6]:port`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => name,
        _ => host,
    }
}

/// What a request on the public host needs besides the repository existing.
#[derive(Debug, PartialEq, Eq)]
pub enum PublicAccess<'a> {
    /// A read: anyone may, signed in or not.
    Read,
    /// A write: a signed-in principal allowed each `ecr-public:` action on the repository.
    Write(Vec<(&'static str, &'a str)>),
    /// Not served on the public host (the catalog).
    Closed,
}

/// The access a `/v2/` route of the public host needs (`route` named by store keys).
pub fn public_v2_access<'a>(route: &V2Route<'a>, method: &str, start: UploadStart<'_>) -> PublicAccess<'a> {
    if matches!(route, V2Route::Catalog) {
        return PublicAccess::Closed;
    }
    if matches!(method, "GET" | "HEAD") && !matches!(route, V2Route::Upload { .. }) {
        return PublicAccess::Read;
    }
    let actions = crate::authz::v2_permissions(route, method, start)
        .into_iter()
        .map(|(action, repository)| (public_action(action), repository))
        .collect();
    PublicAccess::Write(actions)
}

/// The ECR Public action of an ECR one (the write actions share their names).
fn public_action(action: &'static str) -> &'static str {
    match action {
        "ecr:PutImage" => "ecr-public:PutImage",
        "ecr:BatchDeleteImage" => "ecr-public:BatchDeleteImage",
        "ecr:InitiateLayerUpload" => "ecr-public:InitiateLayerUpload",
        "ecr:UploadLayerPart" => "ecr-public:UploadLayerPart",
        "ecr:CompleteLayerUpload" => "ecr-public:CompleteLayerUpload",
        "ecr:BatchCheckLayerAvailability" => "ecr-public:BatchCheckLayerAvailability",
        // Reads are never asked of a write route; anything else is refused by name.
        _ => "ecr-public:Unknown",
    }
}

/// The calendar month (UTC) of `epoch_seconds` as `YYYY-MM`, and the seconds until the next.
pub fn month_and_rest(epoch_seconds: i64) -> (String, u64) {
    let date = berth_iam::format_iso8601(epoch_seconds);
    let (year, month): (i64, u32) = (date[..4].parse().unwrap_or(1970), date[5..7].parse().unwrap_or(1));
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let next = berth_iam::parse_date(&format!("{ny:04}-{nm:02}-01T00:00:00Z"))
        .map_or(epoch_seconds, |ns| (ns / 1_000_000_000) as i64);
    (date[..7].to_string(), (next - epoch_seconds).max(1) as u64)
}

impl Registry {
    /// The public host's configuration, if ECR Public is on.
    pub fn public_host_config(&self) -> Option<&PublicHost> {
        self.public_host.get()
    }

    /// The public registry an `<alias>/<repository>` name is in, and the repository's store key;
    /// `None` when no account holds the alias (or the name has no repository part).
    pub async fn resolve_public_name(&self, name: &str) -> Result<Option<(PublicRegistry, String)>, RegistryError> {
        let Some((alias, repository)) = name.split_once('/') else { return Ok(None) };
        let Some(account) = self.meta().account_of_registry_alias(alias).await? else { return Ok(None) };
        let key = public_repository_key(&account, repository);
        Ok(Some((PublicRegistry { account, alias: alias.to_string() }, key)))
    }

    /// Refuses an anonymous pull from `source` that has used up this month's allowance
    /// (`AnonymousAllowanceExceeded`, with the seconds until the month ends).
    pub async fn check_anonymous_pull(&self, source: IpAddr, now_seconds: i64) -> Result<(), RegistryError> {
        let Some(host) = self.public_host.get() else { return Ok(()) };
        let (month, rest) = month_and_rest(now_seconds);
        let used = self.meta().anonymous_pull_bytes(&source.to_string(), &month).await?;
        if used >= host.anonymous_bytes_per_month {
            return Err(RegistryError::AnonymousAllowanceExceeded {
                allowance: host.anonymous_bytes_per_month,
                retry_after_seconds: rest,
            });
        }
        Ok(())
    }

    /// Counts `bytes` an anonymous pull from `source` was sent, behind the request: the
    /// response does not wait for the write, and a failed write is logged, not answered.
    pub fn record_anonymous_pull(&self, source: IpAddr, bytes: u64, now_seconds: i64) {
        if bytes == 0 {
            return;
        }
        let (month, _) = month_and_rest(now_seconds);
        let meta = self.meta().clone();
        tokio::spawn(async move {
            if let Err(e) = meta.add_anonymous_pull_bytes(&source.to_string(), &month, bytes).await {
                tracing::warn!(error = %e, %source, bytes, "could not count an anonymous pull");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_host_is_matched_by_name() {
        let host = PublicHost { name: "localhost".into(), anonymous_bytes_per_month: 1 };
        assert!(host.serves("localhost:5000"));
        assert!(host.serves("LOCALHOST"));
        assert!(!host.serves("127.0.0.1:5000"));
        assert!(!host.serves("localhost.example:5000"));
        let with_port = PublicHost { name: "public.example:443".into(), anonymous_bytes_per_month: 1 };
        assert!(with_port.serves("public.example"));
        let v6 = PublicHost { name: "[::1]".into(), anonymous_bytes_per_month: 1 };
        assert!(v6.serves("[::1]:5000"));
        assert!(!v6.serves("[::2]:5000"));
    }

    #[test]
    fn reads_are_anyones_writes_need_ecr_public_actions() {
        let manifest = V2Route::Manifest { name: "k", reference: "v1" };
        assert_eq!(public_v2_access(&manifest, "GET", UploadStart::Session), PublicAccess::Read);
        assert_eq!(public_v2_access(&manifest, "HEAD", UploadStart::Session), PublicAccess::Read);
        assert_eq!(
            public_v2_access(&manifest, "PUT", UploadStart::Session),
            PublicAccess::Write(vec![("ecr-public:PutImage", "k")])
        );
        assert_eq!(
            public_v2_access(&manifest, "DELETE", UploadStart::Session),
            PublicAccess::Write(vec![("ecr-public:BatchDeleteImage", "k")])
        );
        assert_eq!(public_v2_access(&V2Route::Catalog, "GET", UploadStart::Session), PublicAccess::Closed);
        // An upload's status is part of a push, not a read.
        let upload = V2Route::Upload { name: "k", id: "u" };
        assert_eq!(
            public_v2_access(&upload, "GET", UploadStart::Session),
            PublicAccess::Write(vec![("ecr-public:UploadLayerPart", "k")])
        );
        let start = V2Route::UploadStart { name: "k" };
        assert_eq!(
            public_v2_access(&start, "POST", UploadStart::Monolithic),
            PublicAccess::Write(vec![
                ("ecr-public:InitiateLayerUpload", "k"),
                ("ecr-public:UploadLayerPart", "k"),
                ("ecr-public:CompleteLayerUpload", "k"),
            ])
        );
    }

    #[test]
    fn months_roll_over_in_utc() {
        // 2026-12-31T23:59:00Z
        let t = 1_798_761_540;
        assert_eq!(month_and_rest(t), ("2026-12".to_string(), 60));
        // 2027-01-01T00:00:00Z starts January, with all of it to go.
        assert_eq!(month_and_rest(t + 60), ("2027-01".to_string(), 31 * 86_400));
        assert_eq!(month_and_rest(1_709_164_800).0, "2024-02"); // 2024-02-29
    }
}
