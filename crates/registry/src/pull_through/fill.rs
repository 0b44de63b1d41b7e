//! Filling the cache: a pull of a repository a rule covers that misses locally is fetched
//! from the upstream, stored, and served.
//!
//! - A fill is authorized first (`FillGrant`: `ecr:BatchImportUpstreamImage` on the repository,
//!   and `ecr:CreateRepository` when it does not exist yet); nothing is asked of the upstream
//!   before that.
//! - A manifest is fetched once per node however many pulls ask for it at once (one fill per
//!   repository and reference), checked against its digest, and served at once from memory
//!   (`pending`) while its blobs and child manifests are fetched in the background; it is
//!   stored when everything it references is, as every manifest is.
//! - A blob is fetched once per node (one fetch per digest): the bytes go to a spool file and
//!   into an ordinary upload of the repository at the same time, so the upload verifies them
//!   against the digest before the blob becomes visible; every client that asks meanwhile
//!   follows the fetch (`spool`: the latest bytes from memory, older ones from the spool
//!   file), so bytes reach clients while they are being stored and never sit in memory whole.

use std::sync::Arc;

use berth_meta::{MetaError, PullThroughRule, RepositorySettings, StoredManifest};
use berth_oci::Digest;
use berth_oci::manifest::{ManifestKind, ParsedManifest, parse_manifest};
use berth_rules::pull_through as rules;
use futures_util::StreamExt;

use super::spool::{BlobFetch, Progress, SpoolWriter, follow, wait_stored};
use super::state::{CacheSource, FillResult, PendingManifest};
use super::upstream::{Upstream, UpstreamError};
use crate::authz::{Authorizer, RequestEnv, Target};
use crate::identity::Caller;
use crate::repositories::{split_repository_key, template_for};
use crate::{Registry, RegistryError};

/// The action that lets a pull fill the cache, as in ECR.
pub const IMPORT_ACTION: &str = "ecr:BatchImportUpstreamImage";

/// How long a cached tag is served before it is checked upstream again, unless its rule
/// says otherwise (ECR's 24 hours).
pub const DEFAULT_REFRESH_SECONDS: i64 = 24 * 3600;

/// After a check the upstream failed, the next one is due this much later (not a whole
/// interval: a stale tag is not to outlive a short outage by a day).
const FAILED_CHECK_RETRY_MS: i64 = 60_000;

/// A blob fetch's lease lives this long unless renewed, which its holder does every
/// `FETCH_LEASE_RENEWAL` while bytes arrive; a node waiting for another's fetch looks every
/// `FETCH_WAIT` whether the blob is stored.
const FETCH_LEASE_MS: i64 = 90_000;
const FETCH_LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(20);
const FETCH_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// A node asks the store whether a tag's check is due at most this often.
const CHECK_POLL_MS: i64 = 1_000;

/// How long an account's rules are read from memory (a rule change on another node is seen
/// within this).
const RULES_CACHE: std::time::Duration = std::time::Duration::from_secs(2);

/// Who pulls, for deciding whether their pull may fill the cache.
pub struct FillGrant<'a> {
    pub authorizer: &'a Authorizer,
    /// `None` when the server does not authenticate (benchmarks): every fill is allowed.
    pub caller: Option<&'a Caller>,
    pub env: &'a RequestEnv,
}

impl FillGrant<'_> {
    /// Whether the caller may fill `repository` (and create it, when `creates`).
    async fn check(&self, repository: &str, creates: bool) -> Result<(), RegistryError> {
        let Some(caller) = self.caller else { return Ok(()) };
        let create = creates.then_some("ecr:CreateRepository");
        for action in std::iter::once(IMPORT_ACTION).chain(create) {
            if let Err(denied) =
                self.authorizer.authorize(caller, action, Target::Repository(repository), self.env).await?
            {
                return Err(RegistryError::Denied(denied.message));
            }
        }
        Ok(())
    }
}

/// Why a fill failed, in ECR's failure codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    Unavailable,
    AccessDenied,
    TooManyRequests,
}

impl UpstreamFailure {
    /// `BatchGetImage`'s failure code.
    pub fn code(self) -> &'static str {
        match self {
            UpstreamFailure::Unavailable => "UpstreamUnavailable",
            UpstreamFailure::AccessDenied => "UpstreamAccessDenied",
            UpstreamFailure::TooManyRequests => "UpstreamTooManyRequests",
        }
    }
}

/// `/metrics` of the cache, per rule (`account`, `prefix`): manifest pulls served from the
/// cache and those that needed a fill, requests to the upstream by kind, their failures, and
/// the bytes of blobs received.
mod counters {
    use super::CacheSource;

    fn labels(account: &str, prefix: &str) -> [(&'static str, String); 2] {
        [("account", account.to_string()), ("rule", prefix.to_string())]
    }

    pub(super) fn hit(account: &str, prefix: &str) {
        metrics::counter!("berth_pull_through_hits_total", &labels(account, prefix)).increment(1);
    }

    pub(super) fn miss(s: &CacheSource) {
        metrics::counter!("berth_pull_through_misses_total", &labels(&s.account, &s.prefix)).increment(1);
    }

    /// One request to the upstream: `manifest`, `blob` or `check`.
    pub(super) fn upstream_request(s: &CacheSource, kind: &'static str) {
        let [a, r] = labels(&s.account, &s.prefix);
        metrics::counter!("berth_pull_through_upstream_requests_total", &[a, r, ("kind", kind.to_string())])
            .increment(1);
    }

    pub(super) fn upstream_error(s: &CacheSource, failure: super::UpstreamFailure) {
        let [a, r] = labels(&s.account, &s.prefix);
        let failure = ("failure", failure.code().to_string());
        metrics::counter!("berth_pull_through_upstream_errors_total", &[a, r, failure]).increment(1);
    }

    pub(super) fn upstream_bytes(s: &CacheSource, n: u64) {
        metrics::counter!("berth_pull_through_upstream_bytes_total", &labels(&s.account, &s.prefix)).increment(n);
    }
}

/// An upstream failure as the registry's error, counted for the rule.
fn counted(source: &CacheSource) -> impl FnOnce(UpstreamError) -> RegistryError + '_ {
    move |e| {
        let err = upstream_error(e);
        if let RegistryError::Upstream { failure, .. } = &err {
            counters::upstream_error(source, *failure);
        }
        err
    }
}

fn upstream_error(e: UpstreamError) -> RegistryError {
    let failure = match &e {
        UpstreamError::AccessDenied(_) => UpstreamFailure::AccessDenied,
        UpstreamError::TooManyRequests(_) => UpstreamFailure::TooManyRequests,
        UpstreamError::Unavailable(_) | UpstreamError::NotARegistry(_) => UpstreamFailure::Unavailable,
    };
    RegistryError::Upstream { failure, message: e.to_string() }
}

/// What a forced refresh of a cached tag found.
#[derive(Debug, Clone)]
pub struct Refresh {
    /// The digest the tag names now.
    pub digest: Digest,
    /// The digest it named before, if the cache held it.
    pub previous: Option<Digest>,
}

impl Registry {
    /// The rule of its account that covers a repository (a key), if one does: then it is a
    /// cache repository, filled by its pulls (and created by the first). The account's rules
    /// are read at most every `RULES_CACHE`, so a rule another node made may be missed that
    /// long: a caller about to answer that nothing is there asks `cache_rule_on_miss`.
    pub async fn cache_rule(&self, repository: &str) -> Result<Option<PullThroughRule>, RegistryError> {
        self.covering_rule(repository, false).await
    }

    /// `cache_rule` for a pull that found nothing locally: when the rules in memory cover
    /// nothing, they are read again, so that a rule just made on another node is seen.
    pub async fn cache_rule_on_miss(&self, repository: &str) -> Result<Option<PullThroughRule>, RegistryError> {
        self.covering_rule(repository, true).await
    }

    async fn covering_rule(&self, repository: &str, reread: bool) -> Result<Option<PullThroughRule>, RegistryError> {
        let (account, name) = split_repository_key(self.registry_id(), repository);
        let covering = |rules: &[PullThroughRule]| {
            let prefix = rules::matching_rule(rules.iter().map(|r| r.prefix.as_str()), name)?;
            rules.iter().find(|r| r.prefix == prefix).cloned()
        };
        let cached = self.cache.rules.lock().expect("rules cache").get(account).cloned();
        if let Some((at, rules)) = cached
            && at.elapsed() < RULES_CACHE
        {
            match covering(&rules) {
                Some(rule) => return Ok(Some(rule)),
                None if !reread => return Ok(None),
                None => {}
            }
        }
        let rules = Arc::new(self.meta().pull_through_rules(account).await?);
        let now = std::time::Instant::now();
        self.cache.rules.lock().expect("rules cache").insert(account.to_string(), (now, rules.clone()));
        Ok(covering(&rules))
    }

    /// Whether `name` is a cache repository: a rule covers it (it need not exist yet: its
    /// first fill creates it). `RepositoryNotFound` when nothing covers it and it does not exist.
    pub async fn is_cache_repository(&self, name: &str) -> Result<bool, RegistryError> {
        if self.cache_rule(name).await?.is_some() {
            return Ok(true);
        }
        match self.find_repository(name).await? {
            Some(_) => Ok(false),
            // A rule made on another node a moment ago covers it, or nothing does.
            None if self.cache_rule_on_miss(name).await?.is_some() => Ok(true),
            None => Err(RegistryError::RepositoryNotFound { name: name.to_string() }),
        }
    }

    /// The upstream a repository (a key) is cached from, if a rule of its account covers it.
    pub(crate) async fn cache_source(&self, repository: &str) -> Result<Option<CacheSource>, RegistryError> {
        let Some(rule) = self.cache_rule_on_miss(repository).await? else { return Ok(None) };
        let (account, name) = split_repository_key(self.registry_id(), repository);
        let url = self.upstream_url(&rule.upstream_url)?;
        let docker_hub = rule.upstream_registry.as_deref() == Some("docker-hub") || url.is_docker_hub();
        let Some(upstream_name) =
            rules::upstream_repository(&rule.prefix, rule.upstream_prefix.as_deref(), name, docker_hub)
        else {
            return Ok(None);
        };
        let credential = match &rule.credential_arn {
            // The rule's secret, in the region its ARN names (checked against the registry's
            // own when the rule was made).
            Some(arn) => {
                let region = arn.split(':').nth(3).unwrap_or_default();
                Some(self.rule_credential(account, region, arn).await?)
            }
            None => None,
        };
        Ok(Some(CacheSource {
            account: account.to_string(),
            prefix: rule.prefix.clone(),
            url,
            repository: upstream_name,
            credential,
            ecr: rule.upstream_registry.as_deref() == Some("ecr"),
        }))
    }

    fn upstream_of(&self, source: &CacheSource) -> Upstream<'_> {
        Upstream::new(&self.upstream, source.url.clone(), source.credential.clone(), source.ecr)
    }

    /// A manifest by tag or digest, as `get_manifest` answers it, filled from the upstream when
    /// the repository is a cache repository that does not hold it yet.
    pub async fn pull_manifest(
        self: &Arc<Self>,
        name: &str,
        reference: &str,
        accept: &[&str],
        grant: &FillGrant<'_>,
    ) -> Result<StoredManifest, RegistryError> {
        // A tag being refilled names its new manifest already.
        let pending_tag = !reference.contains(':') && self.cache.pending(name, reference).is_some();
        let miss = match self.get_manifest(name, reference, accept).await {
            Ok(cached) if !pending_tag => return self.refreshed(name, reference, accept, grant, cached).await,
            Ok(_) => None,
            Err(e) if e.is_not_found() => Some(e),
            Err(e) => return Err(e),
        };
        let pending = match self.cache.pending(name, reference) {
            // Served from memory while it is being stored: a hit too.
            Some(p) => {
                if let Some(rule) = self.cache_rule(name).await? {
                    counters::hit(&rule.account_id, &rule.prefix);
                }
                p
            }
            None => {
                let miss = miss.unwrap_or_else(|| crate::service::manifest_unknown(reference));
                let Some(source) = self.cache_source(name).await? else { return Err(miss) };
                let creates = self.find_repository(name).await?.is_none();
                grant.check(name, creates).await?;
                counters::miss(&source);
                match self.fill_manifest(name, reference, Arc::new(source)).await? {
                    Some(p) => p,
                    None => return Err(miss),
                }
            }
        };
        let m = negotiated(&pending.manifest, reference, accept)?;
        self.check_served_fill(name, m).await
    }

    /// A manifest served from memory while its fill is stored passes the repository's
    /// verification on pull as a stored one does (it has no signature yet: refused until one
    /// arrives, by the repository's own signing rule or a client's).
    async fn check_served_fill(&self, name: &str, mut m: StoredManifest) -> Result<StoredManifest, RegistryError> {
        m.pull_gate.verification = match self.meta().pull_verification(name).await {
            Ok(v) => v,
            Err(MetaError::RepositoryNotFound) => None,
            Err(e) => return Err(e.into()),
        };
        self.check_pull_verification(name, &m).await?;
        Ok(m)
    }

    /// A cached manifest by tag, checked upstream first when its rule's refresh interval has
    /// passed since the tag was last checked (by any node): a tag moved upstream is filled
    /// anew and its new manifest served. The cached one is served whenever the check cannot
    /// be made (the upstream down or refusing) or the caller may not fill.
    async fn refreshed(
        self: &Arc<Self>,
        name: &str,
        reference: &str,
        accept: &[&str],
        grant: &FillGrant<'_>,
        cached: StoredManifest,
    ) -> Result<StoredManifest, RegistryError> {
        let now = berth_meta::now_ms();
        let Some(rule) = self.cache_rule(name).await? else { return Ok(cached) };
        counters::hit(&rule.account_id, &rule.prefix);
        // Digests never change; a tag is asked about at most once a second per node.
        if reference.contains(':') || !self.cache.check_may_be_due(name, reference, now) {
            return Ok(cached);
        }
        let interval = rule.refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS).saturating_mul(1000);
        if !self.meta().claim_tag_check(name, reference, now, now - interval).await? {
            self.cache.next_check_at(name, reference, now + interval.min(CHECK_POLL_MS));
            return Ok(cached);
        }
        self.cache.next_check_at(name, reference, now + interval.min(CHECK_POLL_MS));
        match self.recheck_tag(name, reference, &cached.digest, Some(grant)).await {
            Ok(Some(newer)) => match negotiated(&newer.manifest, reference, accept) {
                Ok(m) => self.check_served_fill(name, m).await,
                Err(_) => Ok(cached),
            },
            Ok(None) => Ok(cached),
            Err(e) => {
                tracing::warn!(repository = name, tag = reference, error = %e, "checking a cached tag upstream failed; serving the cached image");
                let retry = now - interval + FAILED_CHECK_RETRY_MS;
                self.meta().claim_tag_check(name, reference, retry, i64::MAX).await?;
                Ok(cached)
            }
        }
    }

    /// Asks the upstream what `tag` names now; if another manifest than `current`, fills it
    /// (when `grant` allows, or always without one: the admin's forced refresh). `None` when
    /// the tag is unchanged, gone upstream, or the caller may not fill.
    async fn recheck_tag(
        self: &Arc<Self>,
        name: &str,
        tag: &str,
        current: &Digest,
        grant: Option<&FillGrant<'_>>,
    ) -> Result<Option<Arc<PendingManifest>>, RegistryError> {
        let Some(source) = self.cache_source(name).await? else { return Ok(None) };
        counters::upstream_request(&source, "check");
        let upstream_digest =
            self.upstream_of(&source).manifest_digest(&source.repository, tag).await.map_err(counted(&source))?;
        match upstream_digest {
            // Unchanged, or gone upstream: what is cached stays.
            Some(d) if d == current.as_str() => return Ok(None),
            None => return Ok(None),
            Some(_) => {}
        }
        if let Some(grant) = grant
            && let Err(e) = grant.check(name, false).await
        {
            tracing::debug!(repository = name, tag, error = %e, "a moved tag is not refilled: the caller may not fill");
            return Ok(None);
        }
        tracing::info!(repository = name, tag, previous = %current, "the tag moved upstream: filling it anew");
        self.fill_manifest(name, tag, Arc::new(source)).await
    }

    /// Checks a cached tag against the upstream now, whatever its refresh interval, and fills
    /// it anew if it moved; waits until the new image is stored. For `berth admin` and the
    /// Berth API's `RefreshCachedImage` (authorized there).
    pub async fn refresh_cached_tag(self: &Arc<Self>, name: &str, tag: &str) -> Result<Refresh, RegistryError> {
        if self.cache_rule(name).await?.is_none() {
            return Err(RegistryError::InvalidParameter(format!(
                "the repository {name:?} is not covered by a pull-through cache rule"
            )));
        }
        let previous = match self.resolve_reference(name, crate::images::ImageRef::of_reference(tag)).await {
            Ok(Ok(d)) => Some(d),
            Ok(Err(_)) | Err(RegistryError::RepositoryNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let pending = match &previous {
            Some(current) => self.recheck_tag(name, tag, current, None).await?,
            None => {
                let Some(source) = self.cache_source(name).await? else {
                    return Err(crate::service::manifest_unknown(tag));
                };
                let pending = self.fill_manifest(name, tag, Arc::new(source)).await?;
                Some(pending.ok_or_else(|| crate::service::manifest_unknown(tag))?)
            }
        };
        self.meta().claim_tag_check(name, tag, berth_meta::now_ms(), i64::MAX).await?;
        match pending {
            Some(p) => {
                p.wait_stored().await?;
                Ok(Refresh { digest: p.manifest.digest.clone(), previous })
            }
            None => {
                let digest = previous.clone().ok_or_else(|| crate::service::manifest_unknown(tag))?;
                Ok(Refresh { digest, previous })
            }
        }
    }

    /// One fill per (repository, reference) on this node; `None` when the upstream has no
    /// such manifest.
    async fn fill_manifest(
        self: &Arc<Self>,
        name: &str,
        reference: &str,
        source: Arc<CacheSource>,
    ) -> Result<Option<Arc<PendingManifest>>, RegistryError> {
        let key = (name.to_string(), reference.to_string());
        let cell = self.cache.fills.lock().expect("fills").entry(key.clone()).or_default().clone();
        let result = cell.get_or_init(|| self.fetch_image(name, reference, source)).await.clone();
        {
            let mut fills = self.cache.fills.lock().expect("fills");
            if fills.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                fills.remove(&key);
            }
        }
        match result {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fetches a manifest, checks it, makes sure the repository exists, serves it from memory
    /// and completes the image in the background.
    async fn fetch_image(self: &Arc<Self>, name: &str, reference: &str, source: Arc<CacheSource>) -> FillResult {
        let (manifest, parsed) = self.fetch_manifest(name, reference, &source).await?;
        self.repository_for_pull_through(name).await?;
        let tag = (!reference.contains(':')).then(|| reference.to_string());
        let pending = PendingManifest::new(manifest);
        let digest = pending.manifest.digest.to_string();
        if let Some(t) = &tag {
            // Checked just now: the refresh interval runs from here (and this node need not
            // ask the store about it for a second).
            let now = berth_meta::now_ms();
            self.meta().claim_tag_check(name, t, now, i64::MAX).await?;
            self.cache.next_check_at(name, t, now + CHECK_POLL_MS);
        }
        self.cache.pending.lock().expect("pending").insert((name.to_string(), digest.clone()), pending.clone());
        if let Some(t) = &tag {
            self.cache.pending_tags.lock().expect("pending tags").insert((name.to_string(), t.clone()), digest.clone());
        }
        tracing::info!(repository = name, reference, %digest, upstream = %source.url.base(), "pull-through cache fill");
        let registry = self.clone();
        let (name, content_type) = (name.to_string(), pending.manifest.media_type.clone());
        let body = pending.manifest.content.clone();
        let task_pending = pending.clone();
        tokio::spawn(async move {
            let stored = registry.complete_image(&name, &parsed, &source).await;
            let stored = match stored {
                Ok(()) => {
                    let reference = tag.as_deref().unwrap_or(&digest);
                    // An upstream .sig is merged with the signatures the cache holds, never
                    // replacing them.
                    let put = registry
                        .put_manifest_keeping_signatures(&name, reference, Some(&content_type), body, &[])
                        .await;
                    match put {
                        // A cached image is signed if the cache repository's own rules say so.
                        Ok(put) if tag.is_some() => {
                            registry.sign_pushed(None, &name, &put).await;
                            Ok(())
                        }
                        other => other.map(|_| ()),
                    }
                }
                Err(e) => Err(e),
            };
            if stored.is_ok() {
                registry.sync_referrers(&name, &digest, &source).await;
            }
            match &stored {
                Ok(()) => tracing::info!(repository = name, %digest, "pull-through cache image stored"),
                Err(e) => tracing::warn!(repository = name, %digest, error = %e, "pull-through cache fill failed"),
            }
            task_pending.stored.send_replace(Some(stored));
            registry.cache.pending.lock().expect("pending").remove(&(name.clone(), digest.clone()));
            if let Some(t) = tag {
                let mut tags = registry.cache.pending_tags.lock().expect("pending tags");
                if tags.get(&(name.clone(), t.clone())) == Some(&digest) {
                    tags.remove(&(name, t));
                }
            }
        });
        Ok(pending)
    }

    /// A manifest from the upstream, verified: by digest it must hash to the digest; by tag it
    /// must match the digest the upstream names, if it names one.
    async fn fetch_manifest(
        &self,
        name: &str,
        reference: &str,
        source: &CacheSource,
    ) -> Result<(StoredManifest, ParsedManifest), RegistryError> {
        let by_digest = if reference.contains(':') { Some(crate::service::digest_param(reference)?) } else { None };
        counters::upstream_request(source, "manifest");
        let fetched =
            self.upstream_of(source).manifest(&source.repository, reference).await.map_err(counted(source))?;
        let Some(m) = fetched else { return Err(crate::service::manifest_unknown(reference)) };
        let invalid = |why: String| RegistryError::Upstream {
            failure: UpstreamFailure::Unavailable,
            message: format!("the upstream's manifest {}:{reference} {why}", source.repository),
        };
        let parsed =
            parse_manifest(m.media_type.as_deref(), &m.content).map_err(|e| invalid(format!("is not valid: {e}")))?;
        let algorithm = by_digest.as_ref().map_or(berth_oci::Algorithm::Sha256, |d| d.algorithm());
        let digest = Digest::from_bytes(algorithm, &m.content);
        let named = by_digest.or_else(|| m.digest.as_deref().and_then(|d| Digest::parse(d).ok()));
        if let Some(named) = named
            && named.algorithm() == digest.algorithm()
            && named != digest
        {
            return Err(invalid(format!("does not match its digest {named} (it hashes to {digest})")));
        }
        let media_type = parsed.kind.media_type().to_string();
        tracing::debug!(repository = name, reference, %digest, "fetched a manifest from the upstream");
        let manifest = StoredManifest {
            digest,
            media_type,
            content: m.content,
            keys: None,
            archived: false,
            pull_gate: Default::default(),
        };
        Ok((manifest, parsed))
    }

    /// Everything a manifest references, stored in the repository: an index's children (each
    /// with its own blobs, every platform) and an image's blobs.
    async fn complete_image(
        self: &Arc<Self>,
        name: &str,
        parsed: &ParsedManifest,
        source: &Arc<CacheSource>,
    ) -> Result<(), RegistryError> {
        for child in &parsed.manifests {
            if self.meta().manifest(name, child).await?.is_some() {
                continue;
            }
            let (manifest, child_parsed) = self.fetch_manifest(name, child.as_str(), source).await?;
            if matches!(child_parsed.kind, ManifestKind::OciIndex | ManifestKind::DockerManifestList) {
                return Err(RegistryError::Upstream {
                    failure: UpstreamFailure::Unavailable,
                    message: format!("the upstream's index lists another index ({child}), which Berth does not cache"),
                });
            }
            let pending = PendingManifest::new(manifest);
            let key = (name.to_string(), child.to_string());
            self.cache.pending.lock().expect("pending").insert(key.clone(), pending.clone());
            let stored = async {
                self.store_blobs(name, &child_parsed.blobs, source).await?;
                let m = &pending.manifest;
                self.put_manifest(name, m.digest.as_str(), Some(&m.media_type), m.content.clone(), &[]).await
            }
            .await;
            self.cache.pending.lock().expect("pending").remove(&key);
            stored?;
        }
        self.store_blobs(name, &parsed.blobs, source).await
    }

    /// Stores the manifests that refer to a stored image upstream (signatures, SBOMs,
    /// attestations), with their blobs. What fails is logged: the image stays served.
    async fn sync_referrers(self: &Arc<Self>, name: &str, subject: &str, source: &Arc<CacheSource>) {
        counters::upstream_request(source, "referrers");
        let referrers = match self.upstream_of(source).referrers(&source.repository, subject).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(repository = name, subject, error = %e, "listing the upstream's referrers failed");
                return;
            }
        };
        for referrer in referrers {
            let stored = async {
                let digest = crate::service::digest_param(&referrer)?;
                if self.meta().manifest(name, &digest).await?.is_some() {
                    return Ok(());
                }
                let (m, parsed) = self.fetch_manifest(name, &referrer, source).await?;
                if !parsed.manifests.is_empty() {
                    // An index of referrers (or a signed index) brings its children first.
                    self.complete_image(name, &parsed, source).await?;
                } else {
                    self.store_blobs(name, &parsed.blobs, source).await?;
                }
                self.put_manifest(name, m.digest.as_str(), Some(&m.media_type), m.content, &[]).await.map(|_| ())
            }
            .await;
            match stored {
                Ok(()) => tracing::debug!(repository = name, subject, referrer, "stored an upstream referrer"),
                Err(e) => {
                    tracing::warn!(repository = name, subject, referrer, error = %e, "storing an upstream referrer failed")
                }
            }
        }
    }

    /// Fetches (or waits for the fetches of) the blobs the repository does not link yet, a few
    /// at a time.
    async fn store_blobs(
        self: &Arc<Self>,
        name: &str,
        blobs: &[Digest],
        source: &Arc<CacheSource>,
    ) -> Result<(), RegistryError> {
        let fetches = futures_util::stream::iter(blobs.iter().cloned())
            .map(|digest| {
                let (registry, source) = (self.clone(), source.clone());
                let name = name.to_string();
                async move {
                    if registry.meta().linked_blob(&name, &digest).await?.is_some() {
                        return Ok(());
                    }
                    let fetch = registry.blob_fetch(&name, &digest, source);
                    wait_stored(&fetch).await.map(|_| ())
                }
            })
            .buffer_unordered(4);
        let results: Vec<Result<(), RegistryError>> = fetches.collect().await;
        results.into_iter().collect()
    }

    /// The fetch of `digest` into `name`: the one in flight, or a new one.
    fn blob_fetch(self: &Arc<Self>, name: &str, digest: &Digest, source: Arc<CacheSource>) -> Arc<BlobFetch> {
        let mut fetches = self.cache.fetches.lock().expect("fetches");
        if let Some(f) = fetches.get(digest.as_str()) {
            return f.clone();
        }
        let fetch = BlobFetch::new(self.cache.spool_path());
        fetches.insert(digest.to_string(), fetch.clone());
        drop(fetches);
        let (registry, name, digest, task_fetch) = (self.clone(), name.to_string(), digest.clone(), fetch.clone());
        tokio::spawn(async move {
            let outcome = registry.run_fetch(&name, &digest, &source, &task_fetch).await;
            let progress = match outcome {
                Ok(size) => Progress::Stored { size },
                Err(e) => {
                    tracing::warn!(repository = name, %digest, error = %e, "pull-through cache blob fetch failed");
                    Progress::Failed(e)
                }
            };
            // Readers that opened the spool keep reading it; a new one reads storage instead.
            let mut fetches = registry.cache.fetches.lock().expect("fetches");
            task_fetch.progress.send_replace(progress);
            if fetches.get(digest.as_str()).is_some_and(|f| Arc::ptr_eq(f, &task_fetch)) {
                fetches.remove(digest.as_str());
            }
            let _ = std::fs::remove_file(&task_fetch.spool);
        });
        fetch
    }

    /// Fetches a blob once across the nodes sharing the store: the node holding the blob's
    /// lease fetches it, the others wait until it is stored (or the lease is free: its holder
    /// died, and one of them takes over). Returns the stored size.
    async fn run_fetch(
        self: &Arc<Self>,
        name: &str,
        digest: &Digest,
        source: &CacheSource,
        fetch: &Arc<BlobFetch>,
    ) -> Result<u64, RegistryError> {
        let lease = format!("pull-through-blob/{}/{digest}", source.account);
        let holder = self.cache.node_id.as_str();
        loop {
            // A fetch that finished just before this one began has stored the blob already.
            if let Some(size) = self.meta().linked_blob(name, digest).await? {
                return Ok(size);
            }
            if self.meta().try_lease(&lease, holder, berth_meta::now_ms(), FETCH_LEASE_MS).await? {
                // The fetch before may have stored the blob and let the lease go between the
                // look above and the lease: looked at again, holding it.
                if let Some(size) = self.meta().linked_blob(name, digest).await? {
                    let _ = self.meta().release_lease(&lease, holder).await;
                    return Ok(size);
                }
                break;
            }
            tokio::time::sleep(FETCH_WAIT).await;
        }
        let fetched = self.fetch_blob_from_upstream(name, digest, source, fetch, &lease).await;
        if let Err(e) = self.meta().release_lease(&lease, holder).await {
            tracing::debug!(%digest, error = %e, "releasing a blob fetch lease failed; it expires by itself");
        }
        fetched
    }

    /// Streams the upstream's bytes into the spool file and, through an ordinary upload that
    /// verifies them, into the repository, renewing the fetch's lease as it goes.
    async fn fetch_blob_from_upstream(
        self: &Arc<Self>,
        name: &str,
        digest: &Digest,
        source: &CacheSource,
        fetch: &Arc<BlobFetch>,
        lease: &str,
    ) -> Result<u64, RegistryError> {
        counters::upstream_request(source, "blob");
        let blob = self.upstream_of(source).blob(&source.repository, digest.as_str()).await.map_err(counted(source))?;
        let Some(blob) = blob else { return Err(crate::service::blob_unknown(digest)) };
        let spool_error = |e: std::io::Error| RegistryError::Internal(format!("the pull-through spool file: {e}"));
        let mut spool = SpoolWriter::create(fetch.clone(), blob.size).await.map_err(spool_error)?;
        // The upload follows the spool as clients do: it verifies and stores at the disk's
        // pace while clients get the bytes at the upstream's.
        let reader = std::fs::File::open(&fetch.spool).map_err(spool_error)?;
        let upload_body = follow(fetch.clone(), reader, None);
        let registry = self.clone();
        let (upload_name, upload_digest) = (name.to_string(), digest.to_string());
        let upload = tokio::spawn(async move { registry.upload_blob(&upload_name, &upload_digest, upload_body).await });
        let mut body = blob.body;
        let mut renewed = std::time::Instant::now();
        let mut upstream_failure = None;
        while let Some(next) = body.next().await {
            match next {
                Ok(chunk) => {
                    counters::upstream_bytes(source, chunk.len() as u64);
                    spool.push(chunk).await.map_err(spool_error)?;
                }
                Err(e) => {
                    upstream_failure = Some(e.to_string());
                    break;
                }
            }
            if renewed.elapsed() >= FETCH_LEASE_RENEWAL {
                renewed = std::time::Instant::now();
                let now = berth_meta::now_ms();
                if !self.meta().try_lease(lease, &self.cache.node_id, now, FETCH_LEASE_MS).await? {
                    tracing::warn!(%digest, "lost the blob fetch lease; another node may fetch the blob too");
                }
            }
        }
        if let Some(why) = upstream_failure {
            counters::upstream_error(source, UpstreamFailure::Unavailable);
            let e = RegistryError::Upstream {
                failure: UpstreamFailure::Unavailable,
                message: format!("the upstream's blob {digest} broke off: {why}"),
            };
            // Readers and the upload stop here; nothing is stored.
            fetch.progress.send_replace(Progress::Failed(e.clone()));
            return Err(e);
        }
        let written = spool.finish().await.map_err(spool_error)?;
        fetch.progress.send_replace(Progress::Received { size: written });
        let stored = upload.await.map_err(|e| RegistryError::Internal(format!("the fill's upload task: {e}")))?;
        let completed = stored?;
        if blob.size.is_some_and(|s| s != completed.size) {
            tracing::warn!(%digest, announced = ?blob.size, stored = completed.size, "the upstream announced another size");
        }
        Ok(completed.size)
    }

    /// A blob GET of a cache repository that does not hold the blob: the fetch's bytes as they
    /// arrive (`None`: not a cache repository, or the upstream has no such blob). With
    /// `whole`, the fetch is waited for and the caller serves the blob from storage.
    pub async fn pull_blob(
        self: &Arc<Self>,
        name: &str,
        digest: &str,
        grant: &FillGrant<'_>,
        whole: bool,
    ) -> Result<Option<crate::BlobRead>, RegistryError> {
        let digest = crate::service::digest_param(digest)?;
        let in_flight = self.cache.fetches.lock().expect("fetches").get(digest.as_str()).cloned();
        let fetch = match in_flight {
            Some(f) => f,
            None => {
                let Some(source) = self.cache_source(name).await? else { return Ok(None) };
                let creates = self.find_repository(name).await?.is_none();
                grant.check(name, creates).await?;
                self.repository_for_pull_through(name).await?;
                self.blob_fetch(name, &digest, Arc::new(source))
            }
        };
        if whole {
            return match wait_stored(&fetch).await {
                Ok(_) => Ok(None),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            };
        }
        // The size first: the response announces it.
        let mut progress = fetch.progress.subscribe();
        let size = loop {
            match &*progress.borrow_and_update() {
                Progress::Receiving { size: Some(s), .. }
                | Progress::Received { size: s }
                | Progress::Stored { size: s } => {
                    break *s;
                }
                Progress::Failed(e) if e.is_not_found() => return Ok(None),
                Progress::Failed(e) => return Err(e.clone()),
                Progress::Asking | Progress::Receiving { size: None, .. } => {}
            }
            if progress.changed().await.is_err() {
                return Err(RegistryError::Internal("the blob fetch ended without an outcome".into()));
            }
        };
        // Opened under the fetches lock, which the fetch takes before it removes the spool.
        let spool = {
            let _fetches = self.cache.fetches.lock().expect("fetches");
            std::fs::File::open(&fetch.spool)
        };
        let Ok(spool) = spool else {
            // Stored meanwhile: served from storage.
            return Ok(None);
        };
        let body = follow(fetch.clone(), spool, Some(size));
        Ok(Some(crate::BlobRead { digest, size, body }))
    }

    /// The repository a fill stores into: it exists, or is created with the
    /// `PULL_THROUGH_CACHE` creation template that covers it, else with default settings.
    async fn repository_for_pull_through(&self, name: &str) -> Result<(), RegistryError> {
        if self.find_repository(name).await?.is_some() {
            return Ok(());
        }
        let templates = self.templates().await?;
        let (settings, tags) = match template_for(&templates, name, "PULL_THROUGH_CACHE") {
            Some((_, spec)) => (spec.settings(), spec.resource_tags.clone()),
            None => (RepositorySettings::default(), Vec::new()),
        };
        match self.create_repository(name, &settings, &tags, None).await {
            Ok(_) => {
                tracing::info!(repository = name, "created for the pull-through cache");
                Ok(())
            }
            Err(RegistryError::RepositoryAlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A manifest for a client that accepts `accept`.
fn negotiated(m: &StoredManifest, reference: &str, accept: &[&str]) -> Result<StoredManifest, RegistryError> {
    if !berth_oci::accepts(accept, &m.media_type) {
        return Err(RegistryError::ManifestNotAccepted {
            reference: reference.to_string(),
            media_type: m.media_type.clone(),
        });
    }
    Ok(m.clone())
}
