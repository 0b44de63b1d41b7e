//! Where authorization is decided. Every ECR operation and every `/v2/` call names its action
//! and resource and asks [`Authorizer::authorize`] once, before any data is read or written;
//! this gathers what the decision needs (the caller's identity policies, the repository and
//! registry policies, the repository's tags, the request's context keys) and lets the pure
//! evaluator in `berth-iam` decide.
//!
//! Policies are cached parsed, per principal and per repository, for [`CACHE_SECONDS`]: a
//! change made through this node clears the cache at once ([`Authorizer::policies_changed`]),
//! and is announced to the other nodes sharing the metadata store, which clear theirs as the
//! notice arrives ([`Authorizer::follow_changes`]; PostgreSQL `NOTIFY`, a millisecond or so).
//! A notice lost (a dropped connection) clears everything; the expiry bounds the rest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_iam::{PolicyDocument, PolicyKind, Principal, RequestContext, authorize};
use berth_meta::{ChangeFeed, IamPolicyStore, IdentityPolicySource, MetaError, PrincipalKind, RepositoryStore};

use crate::identity::Caller;

/// How long parsed policies are trusted before they are read again.
pub const CACHE_SECONDS: u64 = 2;
/// The change-feed topic for everything authorization caches: policies, users, groups, tags,
/// settings, repositories.
pub const AUTHZ_TOPIC: &str = "authz";
const CACHE_MAX: usize = 10_000;

/// The actions the registry policy governs under `REGISTRY_POLICY_SCOPE` V1 (V2: all).
const V1_REGISTRY_ACTIONS: [&str; 3] = ["ecr:ReplicateImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"];

/// What a request acts on.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A repository (which may not exist yet, e.g. for `CreateRepository`).
    Repository(&'a str),
    /// An account's registry as a whole (`GetAuthorizationToken`, `DescribeRegistry`, …):
    /// resource `*` in that account.
    Registry(&'a str),
    /// Another service's resource of an account, by ARN (a Secrets Manager secret): identity
    /// policies decide; ECR's registry policy does not apply to it.
    Resource { arn: &'a str, account: &'a str },
    /// A public repository (ECR Public), by its store key (`public::public_repository_key`):
    /// its ECR Public ARN, its repository policy and tags apply; ECR's registry policy does not.
    PublicRepository(&'a str),
}

/// A KMS key as authorization sees it: its ARN, its account and its key policy's text.
#[derive(Debug, Clone, Copy)]
pub struct KeyTarget<'a> {
    pub arn: &'a str,
    pub account: &'a str,
    pub policy: &'a str,
}

/// Facts about the request itself, for condition keys.
#[derive(Debug, Clone, Default)]
pub struct RequestEnv {
    pub source_ip: Option<IpAddr>,
    pub secure_transport: bool,
    /// Tags the request sets (`aws:RequestTag/*`).
    pub request_tags: Vec<(String, String)>,
    /// The tag keys the request names (`aws:TagKeys`): those it sets or removes.
    pub tag_keys: Vec<String>,
}

/// A refusal, worded as AWS words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDenied {
    pub message: String,
    /// Whether a policy denied it outright (nothing, not even a KMS grant, then allows it).
    pub explicit: bool,
}

/// The AWS-managed ECR policies, built in so they can be attached by ARN.
pub fn aws_managed_policy(arn: &str) -> Option<&'static str> {
    const READ: &str = r#""ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:GetRepositoryPolicy","ecr:DescribeRepositories","ecr:ListImages","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetLifecyclePolicy","ecr:GetLifecyclePolicyPreview","ecr:ListTagsForResource","ecr:DescribeImageScanFindings""#;
    static READ_ONLY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{READ}],"Resource":"*"}}]}}"#)
    });
    static POWER_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{READ},"ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage"],"Resource":"*"}}]}}"#
        )
    });
    const FULL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
    // ECR Public's, as AWS defines them (a public registry's token needs sts:GetServiceBearerToken too).
    const PUBLIC_READ: &str = r#""ecr-public:GetAuthorizationToken","sts:GetServiceBearerToken","ecr-public:BatchCheckLayerAvailability","ecr-public:GetRepositoryPolicy","ecr-public:DescribeRepositories","ecr-public:DescribeRegistries","ecr-public:DescribeImages","ecr-public:DescribeImageTags","ecr-public:GetRepositoryCatalogData","ecr-public:GetRegistryCatalogData""#;
    static PUBLIC_READ_ONLY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{PUBLIC_READ}],"Resource":"*"}}]}}"#
        )
    });
    static PUBLIC_POWER_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{PUBLIC_READ},"ecr-public:InitiateLayerUpload","ecr-public:UploadLayerPart","ecr-public:CompleteLayerUpload","ecr-public:PutImage"],"Resource":"*"}}]}}"#
        )
    });
    const PUBLIC_FULL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr-public:*","sts:GetServiceBearerToken"],"Resource":"*"}]}"#;
    match arn.strip_prefix("arn:aws:iam::aws:policy/")? {
        "AmazonEC2ContainerRegistryReadOnly" => Some(READ_ONLY.as_str()),
        "AmazonEC2ContainerRegistryPowerUser" => Some(POWER_USER.as_str()),
        "AmazonEC2ContainerRegistryFullAccess" => Some(FULL),
        "AmazonElasticContainerRegistryPublicReadOnly" => Some(PUBLIC_READ_ONLY.as_str()),
        "AmazonElasticContainerRegistryPublicPowerUser" => Some(PUBLIC_POWER_USER.as_str()),
        "AmazonElasticContainerRegistryPublicFullAccess" => Some(PUBLIC_FULL),
        _ => None,
    }
}

type Doc = Arc<PolicyDocument>;
type Docs = Arc<Vec<Doc>>;

/// A repository's policy and tags.
struct RepositoryFacts {
    policy: Option<Doc>,
    tags: Vec<(String, String)>,
}

/// The registry policy and its scope.
struct RegistryFacts {
    policy: Option<Doc>,
    v1_scope: bool,
}

#[derive(Default)]
struct Cache {
    identity: HashMap<String, (Instant, Docs)>,
    repositories: HashMap<String, (Instant, Arc<RepositoryFacts>)>,
    /// Per account.
    registry: HashMap<String, (Instant, Arc<RegistryFacts>)>,
}

pub struct Authorizer {
    /// Identity policies (of principals and their groups).
    policies: Arc<dyn IamPolicyStore>,
    /// Resource policies, resource tags and the registry policy's scope.
    repositories: Arc<dyn RepositoryStore>,
    /// Where changes are announced to, and heard from, the other nodes.
    changes: Arc<dyn ChangeFeed>,
    account_id: String,
    region: String,
    cache: Mutex<Cache>,
    /// Parsed documents by their text: when a cache entry expires the text is read again, but
    /// parsed again only if it changed (parsing a large policy costs a millisecond).
    parsed: Mutex<HashMap<(bool, String), Option<Doc>>>,
}

fn fresh(at: &Instant) -> bool {
    at.elapsed() < Duration::from_secs(CACHE_SECONDS)
}

impl Authorizer {
    pub fn new(
        policies: Arc<dyn IamPolicyStore>,
        repositories: Arc<dyn RepositoryStore>,
        changes: Arc<dyn ChangeFeed>,
        account_id: String,
        region: String,
    ) -> Self {
        Authorizer {
            policies,
            repositories,
            changes,
            account_id,
            region,
            cache: Mutex::new(Cache::default()),
            parsed: Mutex::new(HashMap::new()),
        }
    }

    /// A stored policy, parsed (once per distinct text). A stored policy that no longer parses
    /// (it was validated when stored) denies nothing and allows nothing, and is logged.
    fn parse_stored(&self, text: &str, kind: PolicyKind, what: &str) -> Option<Doc> {
        let key = (kind == PolicyKind::Identity, text.to_string());
        if let Some(doc) = self.parsed.lock().expect("parsed policies").get(&key) {
            return doc.clone();
        }
        let doc = match PolicyDocument::parse(text, kind) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::error!(policy = what, error = %e, "stored policy does not parse; ignored");
                None
            }
        };
        let mut parsed = self.parsed.lock().expect("parsed policies");
        if parsed.len() >= CACHE_MAX {
            parsed.clear();
        }
        parsed.insert(key, doc.clone());
        doc
    }

    /// Forgets every cached policy here.
    pub fn invalidate(&self) {
        *self.cache.lock().expect("authz cache") = Cache::default();
    }

    /// Call after changing any policy, user, group, tag or setting: forgets the cached ones
    /// here and tells the other nodes to.
    pub async fn policies_changed(&self) {
        self.invalidate();
        if let Err(e) = self.changes.announce_change(AUTHZ_TOPIC).await {
            tracing::warn!(error = %e, "could not announce a policy change to the other nodes");
        }
    }

    /// Clears the cache whenever another node announces a change, until the store closes.
    /// Returns at once on a store only one node opens.
    pub async fn follow_changes(self: Arc<Self>) {
        let mut notices = match self.changes.watch_changes().await {
            Ok(Some(notices)) => notices,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot hear other nodes' changes: cached policies expire after {CACHE_SECONDS} s");
                return;
            }
        };
        while let Some(topic) = notices.recv().await {
            if topic == AUTHZ_TOPIC || topic == berth_meta::ANY_CHANGE {
                self.invalidate();
            }
        }
    }

    /// The ARN of a repository, by its key (see `repositories::repository_key`).
    pub fn repository_arn(&self, key: &str) -> String {
        crate::repositories::repository_arn(&self.account_id, &self.region, key)
    }

    async fn identity_policies(&self, principal_id: &str) -> Result<Docs, MetaError> {
        if let Some((at, docs)) = self.cache.lock().expect("authz cache").identity.get(principal_id)
            && fresh(at)
        {
            return Ok(docs.clone());
        }
        let mut docs = Vec::new();
        for source in self.policies.identity_policies(principal_id).await? {
            let (text, what) = match &source {
                IdentityPolicySource::Inline { document, name, .. } => (Some(document.as_str()), name.clone()),
                IdentityPolicySource::Attached { document: Some(d), arn, .. } => (Some(d.as_str()), arn.clone()),
                IdentityPolicySource::Attached { document: None, arn, .. } => (aws_managed_policy(arn), arn.clone()),
            };
            if let Some(doc) = text.and_then(|t| self.parse_stored(t, PolicyKind::Identity, &what)) {
                docs.push(doc);
            }
        }
        let docs = Arc::new(docs);
        let mut cache = self.cache.lock().expect("authz cache");
        if cache.identity.len() >= CACHE_MAX {
            cache.identity.clear();
        }
        cache.identity.insert(principal_id.to_string(), (Instant::now(), docs.clone()));
        Ok(docs)
    }

    /// Reads the policies and tags of the repositories `first` to `last` (a listing's page) in
    /// two queries, unless the first one's facts are still fresh: a listing then decides each
    /// repository from the cache instead of reading two rows per repository — which, for a page
    /// of thousands, every `CACHE_SECONDS`, was the listing's slowest request.
    pub async fn prime_repository_facts(&self, first: &str, last: &str) -> Result<(), MetaError> {
        if self.cache.lock().expect("authz cache").repositories.get(first).is_some_and(|(at, _)| fresh(at)) {
            return Ok(());
        }
        let rows = self.repositories.repository_facts_between(first, last).await?;
        let now = Instant::now();
        let primed: Vec<(String, Arc<RepositoryFacts>)> = rows
            .into_iter()
            .map(|r| {
                let policy = r.policy.and_then(|t| self.parse_stored(&t, PolicyKind::Resource, &r.name));
                (r.name, Arc::new(RepositoryFacts { policy, tags: r.tags }))
            })
            .collect();
        let mut cache = self.cache.lock().expect("authz cache");
        if cache.repositories.len() + primed.len() > CACHE_MAX {
            cache.repositories.clear();
        }
        for (name, facts) in primed.into_iter().take(CACHE_MAX) {
            cache.repositories.insert(name, (now, facts));
        }
        Ok(())
    }

    async fn repository_facts(&self, name: &str) -> Result<Arc<RepositoryFacts>, MetaError> {
        if let Some((at, facts)) = self.cache.lock().expect("authz cache").repositories.get(name)
            && fresh(at)
        {
            return Ok(facts.clone());
        }
        let facts = match self.repositories.repository_policy(name).await {
            Ok(policy) => RepositoryFacts {
                policy: policy.and_then(|t| self.parse_stored(&t, PolicyKind::Resource, name)),
                tags: self.repositories.repository_resource_tags(name).await?,
            },
            // A repository that does not exist (yet) has no policy and no tags.
            Err(MetaError::RepositoryNotFound) => RepositoryFacts { policy: None, tags: Vec::new() },
            Err(e) => return Err(e),
        };
        let facts = Arc::new(facts);
        let mut cache = self.cache.lock().expect("authz cache");
        if cache.repositories.len() >= CACHE_MAX {
            cache.repositories.clear();
        }
        cache.repositories.insert(name.to_string(), (Instant::now(), facts.clone()));
        Ok(facts)
    }

    async fn registry_facts(&self, account: &str) -> Result<Arc<RegistryFacts>, MetaError> {
        if let Some((at, facts)) = self.cache.lock().expect("authz cache").registry.get(account)
            && fresh(at)
        {
            return Ok(facts.clone());
        }
        let policy = self.repositories.registry_policy(account).await?;
        let scope = self.repositories.account_setting(account, "REGISTRY_POLICY_SCOPE").await?;
        let facts = Arc::new(RegistryFacts {
            policy: policy.and_then(|t| self.parse_stored(&t, PolicyKind::Resource, "registry policy")),
            v1_scope: scope.as_deref() == Some("V1"),
        });
        let mut cache = self.cache.lock().expect("authz cache");
        if cache.registry.len() >= CACHE_MAX {
            cache.registry.clear();
        }
        cache.registry.insert(account.to_string(), (Instant::now(), facts.clone()));
        Ok(facts)
    }

    /// Decides whether `caller` may perform `action` on `target`.
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        target: Target<'_>,
        env: &RequestEnv,
    ) -> Result<Result<(), AccessDenied>, MetaError> {
        self.decide(caller, action, target, env, None).await
    }

    /// Whether `caller` could still perform `action` on the repository if its policy were
    /// `policy`: `SetRepositoryPolicy`'s lockout check.
    pub async fn authorize_with_repository_policy(
        &self,
        caller: &Caller,
        action: &str,
        repository: &str,
        env: &RequestEnv,
        policy: &PolicyDocument,
    ) -> Result<Result<(), AccessDenied>, MetaError> {
        let target = match crate::public::split_public_key(repository) {
            Some(_) => Target::PublicRepository(repository),
            None => Target::Repository(repository),
        };
        self.decide(caller, action, target, env, Some(policy)).await
    }

    /// Whether `caller` may perform the KMS `action` on `key`, by KMS's rule: its key policy
    /// must allow, directly or by allowing the
    /// account root and so delegating to IAM policies. `context` adds the request's KMS
    /// condition keys (`kms:EncryptionContext:*`, `kms:ViaService`, …). Grants are the KMS
    /// service's to weigh, after an implicit deny.
    pub async fn authorize_with_key_policy(
        &self,
        caller: &Caller,
        action: &str,
        key: KeyTarget<'_>,
        env: &RequestEnv,
        context: &[(String, Vec<String>)],
    ) -> Result<Result<(), AccessDenied>, MetaError> {
        let KeyTarget { arn: key_arn, account: key_account, policy: key_policy } = key;
        let mut ctx = request_context(caller, action, key_arn, key_account, env);
        for (k, v) in context {
            ctx.insert(k, v.clone());
        }
        let identity = match caller.kind {
            PrincipalKind::Root => Arc::new(Vec::new()),
            PrincipalKind::User => self.identity_policies(&caller.principal_id).await?,
        };
        let identity_refs: Vec<&PolicyDocument> = identity.iter().map(|d| d.as_ref()).collect();
        let decision = match self.parse_stored(key_policy, PolicyKind::Resource, key_arn) {
            Some(policy) => berth_iam::authorize_with_key_policy(&ctx, &identity_refs, &policy),
            // A key policy that no longer parses allows nothing.
            None => berth_iam::Authorization {
                decision: berth_iam::Decision::ImplicitDeny,
                reason: berth_iam::Reason::KeyPolicyWithoutAllow,
            },
        };
        if decision.is_allowed() {
            return Ok(Ok(()));
        }
        tracing::info!(caller = %caller.arn, action, resource = %key_arn, reason = %decision.reason, "access denied");
        Ok(Err(denial(caller, action, key_arn, key_account, &decision)))
    }

    async fn decide(
        &self,
        caller: &Caller,
        action: &str,
        target: Target<'_>,
        env: &RequestEnv,
        repository_policy: Option<&PolicyDocument>,
    ) -> Result<Result<(), AccessDenied>, MetaError> {
        let resource = match target {
            Target::Repository(key) => self.repository_arn(key),
            Target::Registry(_) => "*".to_string(),
            Target::Resource { arn, .. } => arn.to_string(),
            Target::PublicRepository(key) => {
                let (account, name) = public_parts(key);
                crate::public::public_repository_arn(account, name)
            }
        };
        // GetAuthorizationToken is an action of the caller's own account (a token is what a
        // principal then presents to any registry it may use), so a principal of another account
        // gets one on its own account's terms; everything else acts on this registry.
        let resource_account = match target {
            Target::Registry(_) if action == "ecr:GetAuthorizationToken" => caller.account_id.clone(),
            Target::Registry(account) | Target::Resource { account, .. } => account.to_string(),
            Target::Repository(key) => crate::repositories::split_repository_key(&self.account_id, key).0.to_string(),
            Target::PublicRepository(key) => public_parts(key).0.to_string(),
        };
        let mut ctx = request_context(caller, action, &resource, &resource_account, env);

        let identity = match caller.kind {
            PrincipalKind::Root => Arc::new(Vec::new()),
            PrincipalKind::User => self.identity_policies(&caller.principal_id).await?,
        };
        let repository = match target {
            Target::Repository(key) | Target::PublicRepository(key) => Some(self.repository_facts(key).await?),
            Target::Registry(_) | Target::Resource { .. } => None,
        };
        if let Some(facts) = &repository {
            for (k, v) in &facts.tags {
                ctx.insert(&format!("aws:ResourceTag/{k}"), vec![v.clone()]);
                ctx.insert(&format!("ecr:ResourceTag/{k}"), vec![v.clone()]);
            }
        }
        let registry = self.registry_facts(&resource_account).await?;
        let mut resource_policies: Vec<&PolicyDocument> = Vec::new();
        if let Some(p) = repository_policy.or_else(|| repository.as_ref().and_then(|f| f.policy.as_deref())) {
            resource_policies.push(p);
        }
        if let Some(p) = registry.policy.as_deref()
            && !matches!(target, Target::Resource { .. } | Target::PublicRepository(_))
            && !action.starts_with("ecr-public:")
            && (!registry.v1_scope || V1_REGISTRY_ACTIONS.contains(&action))
        {
            resource_policies.push(p);
        }
        let identity_refs: Vec<&PolicyDocument> = identity.iter().map(|d| d.as_ref()).collect();
        let decision = authorize(&ctx, &identity_refs, &resource_policies);
        if decision.is_allowed() {
            return Ok(Ok(()));
        }
        tracing::info!(caller = %caller.arn, action, resource = %resource, reason = %decision.reason, "access denied");
        Ok(Err(denial(caller, action, &resource, &resource_account, &decision)))
    }
}

/// A public repository key's (account, name); empty for a key that is not one.
fn public_parts(key: &str) -> (&str, &str) {
    crate::public::split_public_key(key).unwrap_or_default()
}

/// The request context every decision starts from: the principal, the action and resource, and
/// the request's own facts (source address, transport, time, the tags it sets or names).
fn request_context(
    caller: &Caller,
    action: &str,
    resource: &str,
    resource_account: &str,
    env: &RequestEnv,
) -> RequestContext {
    let principal = match caller.kind {
        PrincipalKind::Root => Principal::root(&caller.account_id),
        PrincipalKind::User => {
            let name = caller.arn.rsplit_once(":user/").map_or(caller.arn.as_str(), |(_, n)| n);
            Principal::user(&caller.account_id, name, &caller.principal_id)
        }
    };
    let mut ctx = RequestContext::new(principal, action, resource.to_string(), resource_account.to_string());
    if let Some(ip) = env.source_ip {
        ctx.set_source_ip(ip);
    }
    ctx.set_secure_transport(env.secure_transport);
    ctx.set_current_time(berth_meta::now_ms() / 1000);
    for (k, v) in &env.request_tags {
        ctx.insert(&format!("aws:RequestTag/{k}"), vec![v.clone()]);
    }
    if !env.tag_keys.is_empty() {
        ctx.insert("aws:TagKeys", env.tag_keys.clone());
    }
    ctx
}

/// A refusal worded as AWS words it, from the evaluator's decision.
fn denial(
    caller: &Caller,
    action: &str,
    resource: &str,
    resource_account: &str,
    decision: &berth_iam::Authorization,
) -> AccessDenied {
    let explicit = decision.decision == berth_iam::Decision::ExplicitDeny;
    let why = match &decision.reason {
        berth_iam::Reason::ExplicitDeny(s) if s.kind == PolicyKind::Resource => {
            "with an explicit deny in a resource-based policy".to_string()
        }
        _ if explicit => "with an explicit deny in an identity-based policy".to_string(),
        berth_iam::Reason::KeyPolicyWithoutAllow => "because no key policy allows the action".to_string(),
        _ if caller.account_id != resource_account => {
            "because no resource-based policy allows the action across accounts".to_string()
        }
        _ => format!("because no identity-based policy allows the {action} action"),
    };
    AccessDenied {
        message: format!("User: {} is not authorized to perform: {action} on resource: {resource} {why}", caller.arn),
        explicit,
    }
}

/// The ECR action an ECR API operation is authorized as: its own name.
/// Whether `action` reads an image's bytes, which a repository's KMS key protects: a caller
/// of another account than the key's needs the key policy's `kms:Decrypt` too
/// (`Registry::check_pull_decrypt`).
pub fn decrypts(action: &str) -> bool {
    matches!(action, "ecr:BatchGetImage" | "ecr:GetDownloadUrlForLayer")
}

pub fn ecr_action(operation: &str) -> String {
    format!("ecr:{operation}")
}

/// What a `POST …/blobs/uploads/` asks for, from its query: a cross-repository mount
/// (`mount=`, with `from=` naming the source), a monolithic upload (`digest=` without `mount`),
/// or a new upload session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadStart<'a> {
    Session,
    Monolithic,
    /// A mount never becomes an upload of the request's body: if it cannot be done, the answer
    /// is a new, empty session (the OCI spec's 202).
    Mount {
        from: Option<&'a str>,
    },
}

impl<'a> UploadStart<'a> {
    pub fn of(mount: Option<&str>, from: Option<&'a str>, digest: Option<&str>) -> Self {
        match (mount, digest) {
            (Some(_), _) => UploadStart::Mount { from },
            (None, Some(_)) => UploadStart::Monolithic,
            (None, None) => UploadStart::Session,
        }
    }
}

/// The (action, repository) pairs a `/v2/` request needs, as ECR maps its registry API onto
/// IAM actions. The catalog is not here: it is filtered by `ecr:DescribeRepositories` instead.
/// A monolithic upload starts, sends and completes at once, so it needs all three upload
/// actions. A mount needs push (`ecr:InitiateLayerUpload`) here; the pull on its source
/// ([`MOUNT_SOURCE_ACTION`]) decides only whether the blob is mounted or a session started.
pub fn v2_permissions<'a>(
    route: &berth_oci::V2Route<'a>,
    method: &str,
    start: UploadStart<'_>,
) -> Vec<(&'static str, &'a str)> {
    use berth_oci::V2Route as R;
    match (route, method) {
        (R::Base | R::Catalog, _) => Vec::new(),
        (R::Tags { name }, _) => vec![("ecr:ListImages", name)],
        (R::Manifest { name, .. }, "GET" | "HEAD") => vec![("ecr:BatchGetImage", name)],
        (R::Manifest { name, .. }, "PUT") => vec![("ecr:PutImage", name)],
        (R::Manifest { name, .. }, _) => vec![("ecr:BatchDeleteImage", name)],
        (R::Referrers { name, .. }, _) => vec![("ecr:BatchGetImage", name)],
        (R::Blob { name, .. }, "GET") => vec![("ecr:GetDownloadUrlForLayer", name)],
        (R::Blob { name, .. }, "HEAD") => vec![("ecr:BatchCheckLayerAvailability", name)],
        (R::Blob { name, .. }, _) => vec![("ecr:BatchDeleteImage", name)],
        (R::UploadStart { name }, _) => match start {
            UploadStart::Monolithic => {
                vec![
                    ("ecr:InitiateLayerUpload", name),
                    ("ecr:UploadLayerPart", name),
                    ("ecr:CompleteLayerUpload", name),
                ]
            }
            UploadStart::Session | UploadStart::Mount { .. } => vec![("ecr:InitiateLayerUpload", name)],
        },
        (R::Upload { name, .. }, "PUT") => vec![("ecr:CompleteLayerUpload", name)],
        (R::Upload { name, .. }, _) => vec![("ecr:UploadLayerPart", name)],
    }
}

/// What a mount needs on its source repository: to read the blob.
pub const MOUNT_SOURCE_ACTION: &str = "ecr:GetDownloadUrlForLayer";

impl crate::Registry {
    /// The authorizer deciding requests to this registry, reading its policies and tags.
    pub fn authorizer(&self, region: &str) -> Authorizer {
        let meta = self.meta();
        Authorizer::new(meta.clone(), meta.clone(), meta.clone(), self.registry_id().to_string(), region.to_string())
    }
}

#[cfg(test)]
mod tests {
    use berth_oci::V2Route;

    use super::*;

    #[test]
    fn v2_calls_map_to_ecr_actions() {
        let m = V2Route::Manifest { name: "app", reference: "v1" };
        let s = UploadStart::Session;
        assert_eq!(v2_permissions(&m, "GET", s), [("ecr:BatchGetImage", "app")]);
        assert_eq!(v2_permissions(&m, "HEAD", s), [("ecr:BatchGetImage", "app")]);
        assert_eq!(v2_permissions(&m, "PUT", s), [("ecr:PutImage", "app")]);
        assert_eq!(v2_permissions(&m, "DELETE", s), [("ecr:BatchDeleteImage", "app")]);
        let b = V2Route::Blob { name: "app", digest: "sha256:00" };
        assert_eq!(v2_permissions(&b, "GET", s), [("ecr:GetDownloadUrlForLayer", "app")]);
        assert_eq!(v2_permissions(&b, "HEAD", s), [("ecr:BatchCheckLayerAvailability", "app")]);
        let start = V2Route::UploadStart { name: "app" };
        assert_eq!(v2_permissions(&start, "POST", s), [("ecr:InitiateLayerUpload", "app")]);
        let mount = UploadStart::of(Some("sha256:00"), Some("base"), Some("sha256:00"));
        assert_eq!(mount, UploadStart::Mount { from: Some("base") }, "a mount with a digest is still a mount");
        assert_eq!(v2_permissions(&start, "POST", mount), [("ecr:InitiateLayerUpload", "app")]);
        let monolithic = UploadStart::of(None, Some("base"), Some("sha256:00"));
        assert_eq!(monolithic, UploadStart::Monolithic);
        assert_eq!(v2_permissions(&start, "POST", monolithic).len(), 3);
        let up = V2Route::Upload { name: "app", id: "u" };
        assert_eq!(v2_permissions(&up, "PATCH", s), [("ecr:UploadLayerPart", "app")]);
        assert_eq!(v2_permissions(&up, "GET", s), [("ecr:UploadLayerPart", "app")]);
        assert_eq!(v2_permissions(&up, "DELETE", s), [("ecr:UploadLayerPart", "app")]);
        assert_eq!(v2_permissions(&up, "PUT", s), [("ecr:CompleteLayerUpload", "app")]);
        assert_eq!(v2_permissions(&V2Route::Tags { name: "app" }, "GET", s), [("ecr:ListImages", "app")]);
        assert_eq!(
            v2_permissions(&V2Route::Referrers { name: "app", digest: "sha256:00" }, "GET", s),
            [("ecr:BatchGetImage", "app")]
        );
        assert!(v2_permissions(&V2Route::Catalog, "GET", s).is_empty());
    }

    #[test]
    fn aws_managed_policies_parse() {
        for name in ["ReadOnly", "PowerUser", "FullAccess"] {
            let text =
                aws_managed_policy(&format!("arn:aws:iam::aws:policy/AmazonEC2ContainerRegistry{name}")).unwrap();
            PolicyDocument::parse(text, PolicyKind::Identity).unwrap();
        }
        assert!(aws_managed_policy("arn:aws:iam::aws:policy/AdministratorAccess").is_none());
    }
}
