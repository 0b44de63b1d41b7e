//! Berth's KMS: symmetric keys per account with KMS's life cycle (enable, disable, scheduled
//! deletion after a 7–30 day window, automatic and on-demand rotation that keeps every old
//! material), aliases, key policies, grants, and the cryptographic operations `Encrypt`,
//! `Decrypt` and `GenerateDataKey`. Key material is 32 random bytes sealed under the master
//! keyring and never leaves the server; ciphertexts name their key and material
//! (`ciphertext.rs`).
//!
//! Every operation on a key is authorized here, by KMS's rule: the key policy must allow,
//! directly or by allowing the account root and so delegating to IAM policies
//! (`Authorizer::authorize_with_key_policy`); what that leaves implicitly denied a grant
//! naming the caller and the operation may still allow. `CreateKey`, `ListKeys` and
//! `ListAliases` are IAM-only (no key yet, or many). The HTTP surface (`aws kms …
//! --endpoint-url`) parses requests, calls these and words the answers.

mod ciphertext;
pub mod grants;

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_meta::{KmsAlias, KmsGrant, KmsKey, KmsKeyMaterial, KmsKeyState, MetaError, MetaStore, SealedKind, now_ms};

use crate::authz::{AccessDenied, Authorizer, KeyTarget, RequestEnv, Target};
use crate::identity::Caller;
use crate::secrets::MasterKeys;
pub use ciphertext::Ciphertext;
pub use grants::{GRANT_OPERATIONS, GrantConstraints};

/// A KMS error: the exception KMS names, with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Disabled(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    InvalidCiphertext(String),
    #[error("{0}")]
    IncorrectKey(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidAliasName(String),
    #[error("{0}")]
    MalformedPolicyDocument(String),
    #[error("{0}")]
    InvalidArn(String),
    #[error("{0}")]
    InvalidMarker(String),
    #[error("{0}")]
    InvalidGrantId(String),
    #[error("{0}")]
    InvalidGrantToken(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    InvalidKeyUsage(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Tag(String),
    #[error("The request would have succeeded, but the DryRun option is set.")]
    DryRun,
    #[error("{0}")]
    Internal(String),
}

impl KmsError {
    /// The `__type` KMS answers with.
    pub fn code(&self) -> &'static str {
        match self {
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::AccessDenied(_) => "AccessDeniedException",
            KmsError::InvalidCiphertext(_) => "InvalidCiphertextException",
            KmsError::IncorrectKey(_) => "IncorrectKeyException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
            KmsError::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            KmsError::InvalidArn(_) => "InvalidArnException",
            KmsError::InvalidMarker(_) => "InvalidMarkerException",
            KmsError::InvalidGrantId(_) => "InvalidGrantIdException",
            KmsError::InvalidGrantToken(_) => "InvalidGrantTokenException",
            KmsError::LimitExceeded(_) => "LimitExceededException",
            KmsError::Unsupported(_) => "UnsupportedOperationException",
            KmsError::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            KmsError::Validation(_) => "ValidationException",
            KmsError::Tag(_) => "TagException",
            KmsError::DryRun => "DryRunOperationException",
            KmsError::Internal(_) => "KMSInternalException",
        }
    }
}

impl From<MetaError> for KmsError {
    fn from(e: MetaError) -> Self {
        KmsError::Internal(e.to_string())
    }
}

impl From<AccessDenied> for KmsError {
    fn from(d: AccessDenied) -> Self {
        KmsError::AccessDenied(d.message)
    }
}

type Result<T> = std::result::Result<T, KmsError>;

/// An encryption context: string pairs bound to a ciphertext.
pub type EncryptionContext = BTreeMap<String, String>;

const DAY_MS: i64 = 86_400_000;
const MAX_POLICY_BYTES: usize = 32_768;
const MAX_PLAINTEXT: usize = 4096;
const MAX_ON_DEMAND_ROTATIONS: usize = 25;
const MAX_DESCRIPTION: usize = 8192;
const DEFAULT_ROTATION_DAYS: i64 = 365;
/// The alias of the key ECR encrypts with when a repository asks for `KMS` and names no key.
pub const ECR_MANAGED_ALIAS: &str = "alias/aws/ecr";

/// Who calls, and how: the caller, the request's facts for policy conditions, and, when a
/// service calls KMS on the caller's behalf (ECR with a repository's key), that service's
/// `kms:ViaService` name.
pub struct KmsCaller<'a> {
    pub authorizer: &'a Authorizer,
    pub caller: &'a Caller,
    pub env: &'a RequestEnv,
    pub via_service: Option<String>,
}

/// `CreateKey`'s request.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub policy: Option<String>,
    pub description: Option<String>,
    pub key_usage: Option<String>,
    pub key_spec: Option<String>,
    pub origin: Option<String>,
    pub multi_region: bool,
    pub bypass_policy_lockout_safety_check: bool,
    pub tags: Vec<(String, String)>,
}

/// `CreateGrant`'s request.
#[derive(Debug, Clone, Default)]
pub struct NewGrant {
    pub key_id: String,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    pub constraints: GrantConstraints,
    pub name: Option<String>,
    pub dry_run: bool,
}

/// A key with the id of its current material, as `DescribeKey` shows it.
pub type KeyMetadata = KmsKey;

/// A page of a listing and the marker of the next one.
pub struct Listed<T> {
    pub items: Vec<T>,
    pub next_marker: Option<String>,
}

/// The answer to `GenerateDataKey`.
pub struct DataKey {
    pub key_arn: String,
    pub material_id: String,
    pub plaintext: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// The answer to `Decrypt`.
pub struct Decrypted {
    pub key_arn: String,
    pub material_id: String,
    pub plaintext: Vec<u8>,
}

/// A key's rotation settings, as `GetKeyRotationStatus` shows them.
pub struct RotationStatus {
    pub key_arn: String,
    pub enabled: bool,
    pub period_days: Option<i64>,
    pub next_rotation_at: Option<i64>,
}

/// The KMS of one region.
#[derive(Clone)]
pub struct Kms {
    meta: Arc<dyn MetaStore>,
    keys: Arc<MasterKeys>,
    region: String,
}

impl crate::Registry {
    /// The KMS of the registry's region.
    pub fn kms(&self) -> Kms {
        Kms { meta: self.meta().clone(), keys: self.master_keys.clone(), region: self.region().to_string() }
    }
}

/// The key a repository's creation resolved, and the id of the grant the creation made (none
/// if the repository's grant was there already: a racing creation of the same repository).
pub struct EcrGrant {
    pub key: KmsKey,
    pub created: Option<String>,
}

/// What ECR's grant on a repository's key lets it do: seal and open the repository's data keys
/// and look at the key.
const ECR_GRANT_OPERATIONS: [&str; 6] =
    ["Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "DescribeKey", "RetireGrant"];

/// The name of ECR's grant for one repository: grant names take `[a-zA-Z0-9:/_-]`, so the
/// repository's ARN is named by its hash.
fn ecr_grant_name(repository_arn: &str) -> String {
    use sha2::Digest as _;
    format!("ecr-repository-{}", &hex::encode(sha2::Sha256::digest(repository_arn.as_bytes()))[..32])
}

fn key_target(key: &KmsKey) -> KeyTarget<'_> {
    KeyTarget { arn: &key.arn, account: &key.account_id, policy: &key.policy }
}

fn not_found(what: &str) -> KmsError {
    KmsError::NotFound(format!("Key '{what}' does not exist"))
}

fn invalid_key_id(what: &str) -> KmsError {
    KmsError::NotFound(format!("Invalid keyId '{what}'"))
}

/// The exception for using a key in `state` for cryptography or grants.
fn unusable(key: &KmsKey) -> Option<KmsError> {
    match key.state {
        KmsKeyState::Enabled => None,
        KmsKeyState::Disabled => Some(KmsError::Disabled(format!("{} is disabled.", key.arn))),
        KmsKeyState::PendingDeletion => Some(pending_deletion(key)),
    }
}

fn pending_deletion(key: &KmsKey) -> KmsError {
    KmsError::InvalidState(format!("{} is pending deletion.", key.arn))
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        out.push_str(&hex::encode(berth_envelope::generate_key()));
    }
    out.truncate(bytes * 2);
    out
}

/// Whether `name` is a valid alias name: `alias/` then 1–250 of letters, digits and `/_-`.
pub fn valid_alias_name(name: &str) -> bool {
    name.strip_prefix("alias/").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 250 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    })
}

/// The condition keys every request has: the caller's account and, when a service calls for
/// the caller, that service.
fn caller_keys(who: &KmsCaller<'_>) -> Vec<(String, Vec<String>)> {
    let mut keys = vec![("kms:CallerAccount".to_string(), vec![who.caller.account_id.clone()])];
    if let Some(service) = &who.via_service {
        keys.push(("kms:ViaService".into(), vec![service.clone()]));
    }
    keys
}

/// The condition keys of a request that carries an encryption context.
fn context_keys(context: &EncryptionContext) -> Vec<(String, Vec<String>)> {
    let mut keys: Vec<(String, Vec<String>)> =
        context.iter().map(|(k, v)| (format!("kms:EncryptionContext:{k}"), vec![v.clone()])).collect();
    if !context.is_empty() {
        keys.push(("kms:EncryptionContextKeys".into(), context.keys().cloned().collect()));
    }
    keys
}

/// A listing's page size: KMS's `Limit`, 1–1000, `default` when not given.
fn page_limit(limit: Option<i64>, default: usize) -> Result<usize> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
        Some(n) => Err(KmsError::Validation(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"
        ))),
    }
}

/// Cuts `items` (in marker order, everything after the request's marker) to a page.
fn page<T>(mut items: Vec<T>, limit: usize, marker_of: impl Fn(&T) -> String) -> Listed<T> {
    let next_marker = (items.len() > limit).then(|| marker_of(&items[limit - 1]));
    items.truncate(limit);
    Listed { items, next_marker }
}

impl Kms {
    fn key_arn(&self, account: &str, key_id: &str) -> String {
        format!("arn:aws:kms:{}:{account}:key/{key_id}", self.region)
    }

    /// The ARN of an alias of `account`.
    pub fn alias_arn(&self, account: &str, alias_name: &str) -> String {
        format!("arn:aws:kms:{}:{account}:{alias_name}", self.region)
    }

    /// A key by its id, if it exists: one whose deletion date has passed is deleted now, and
    /// one due for automatic rotation is rotated first.
    async fn key_by_id(&self, key_id: &str) -> Result<Option<KmsKey>> {
        let Some(key) = self.meta.kms_key(key_id).await? else { return Ok(None) };
        let now = now_ms();
        if key.state == KmsKeyState::PendingDeletion && key.deletion_date.is_some_and(|d| d <= now) {
            self.meta.delete_kms_key(key_id).await?;
            tracing::info!(key = %key.arn, "KMS key deleted: its deletion date passed");
            return Ok(None);
        }
        if key.state == KmsKeyState::Enabled
            && let (Some(period), Some(at)) = (key.rotation_period_days, key.next_rotation_at)
            && at <= now
        {
            // Two nodes may both find it due and both rotate: an extra material, never a lost one.
            self.rotate(&key, "AUTOMATIC", Some(now + period * DAY_MS)).await?;
            return Ok(self.meta.kms_key(key_id).await?);
        }
        Ok(Some(key))
    }

    /// The key a `KeyId` names for `account`'s caller: a key id, a key ARN, an alias name or an
    /// alias ARN (another account's key only by ARN). `create_managed` creates `alias/aws/ecr`
    /// on first use, as KMS does for a service's AWS-managed key.
    async fn resolve(&self, account: &str, key_ref: &str, create_managed: bool) -> Result<KmsKey> {
        let arn_prefix = format!("arn:aws:kms:{}:", self.region);
        let (owner, local) = if let Some(rest) = key_ref.strip_prefix("arn:") {
            let Some(rest) = key_ref.strip_prefix(&arn_prefix) else {
                return Err(if rest.starts_with("aws:kms:") { not_found(key_ref) } else { invalid_key_id(key_ref) });
            };
            match rest.split_once(':') {
                Some((owner, local)) if owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()) => {
                    (owner, local)
                }
                _ => return Err(invalid_key_id(key_ref)),
            }
        } else {
            (account, key_ref)
        };
        if local.starts_with("alias/") {
            let alias = match self.meta.kms_alias(owner, local).await? {
                Some(a) => a,
                None if create_managed && owner == account && local == ECR_MANAGED_ALIAS => {
                    return self.managed_key(account, "ecr").await;
                }
                None => {
                    return Err(KmsError::NotFound(format!("Alias {} is not found.", self.alias_arn(owner, local))));
                }
            };
            return match self.key_by_id(&alias.target_key_id).await? {
                Some(k) => Ok(k),
                None => Err(not_found(&self.key_arn(owner, &alias.target_key_id))),
            };
        }
        let id = local.strip_prefix("key/").unwrap_or(local);
        if local.starts_with("key/") != key_ref.starts_with("arn:") || uuid::Uuid::parse_str(id).is_err() {
            return Err(invalid_key_id(key_ref));
        }
        match self.key_by_id(id).await? {
            Some(k) if k.account_id == owner => Ok(k),
            _ => Err(not_found(&self.key_arn(owner, id))),
        }
    }

    /// `account`'s AWS-managed key for `service` (`alias/aws/<service>`), created on first use.
    async fn managed_key(&self, account: &str, service: &str) -> Result<KmsKey> {
        let alias_name = format!("alias/aws/{service}");
        if let Some(alias) = self.meta.kms_alias(account, &alias_name).await?
            && let Some(key) = self.key_by_id(&alias.target_key_id).await?
        {
            return Ok(key);
        }
        let now = now_ms();
        let key = self
            .store_new_key(
                account,
                format!("Default key that protects my {} data when no other key is defined", service.to_uppercase()),
                "AWS",
                grants::aws_managed_key_policy(account, service, &self.region),
                Some(DEFAULT_ROTATION_DAYS),
            )
            .await?;
        let alias = KmsAlias {
            account_id: account.into(),
            alias_name,
            target_key_id: key.key_id.clone(),
            created_at: now,
            updated_at: now,
        };
        if self.meta.create_kms_alias(&alias).await? {
            tracing::info!(key = %key.arn, alias = %alias.alias_name, "AWS-managed KMS key created on first use");
            return Ok(key);
        }
        // Another request created it first: use theirs.
        self.meta.delete_kms_key(&key.key_id).await?;
        match self.meta.kms_alias(account, &alias.alias_name).await? {
            Some(a) => self.key_by_id(&a.target_key_id).await?.ok_or_else(|| not_found(&a.alias_name)),
            None => Err(KmsError::Internal(format!("{} vanished while it was created", alias.alias_name))),
        }
    }

    /// The key ECR encrypts a repository's data with: the one `key_ref` names, or the account's
    /// `alias/aws/ecr`, created on first use.
    pub async fn ecr_key(&self, account: &str, key_ref: Option<&str>) -> Result<KmsKey> {
        match key_ref {
            Some(r) => self.resolve(account, r, true).await,
            None => self.managed_key(account, "ecr").await,
        }
    }

    /// The principal ECR's grants name, which is also the `kms:ViaService` of the calls ECR
    /// makes to KMS for a caller.
    pub fn ecr_principal(&self) -> String {
        format!("ecr.{}.amazonaws.com", self.region)
    }

    /// What `CreateRepository` does with a KMS key: resolves it in `account` (`alias/aws/ecr`
    /// when none is named, made on first use), checks that the creator may describe it and
    /// create and retire grants on it through ECR, and grants ECR the use of it for the
    /// repository. `creator` is `None` when ECR creates the repository itself (from a
    /// creation template). Returns the key; its grant is retired by [`Kms::retire_ecr_grant`].
    pub async fn grant_to_ecr(
        &self,
        creator: Option<&KmsCaller<'_>>,
        account: &str,
        key_ref: Option<&str>,
        repository_arn: &str,
    ) -> Result<EcrGrant> {
        let key = self.ecr_key(account, key_ref).await?;
        let principal = self.ecr_principal();
        if creator.is_none() && key.account_id != account {
            // Nobody's permission was checked: ECR uses only keys of the repository's account
            // on its own.
            return Err(KmsError::AccessDenied(format!(
                "{} belongs to another account: a repository ECR creates itself may use only its own account's keys",
                key.arn
            )));
        }
        if let Some(c) = creator {
            let via_ecr = KmsCaller {
                authorizer: c.authorizer,
                caller: c.caller,
                env: c.env,
                via_service: Some(principal.clone()),
            };
            for op in ["DescribeKey", "CreateGrant", "RetireGrant"] {
                let extra = match op {
                    "CreateGrant" => vec![
                        ("kms:GrantOperations".to_string(), ECR_GRANT_OPERATIONS.map(str::to_string).to_vec()),
                        ("kms:GranteePrincipal".to_string(), vec![principal.clone()]),
                        ("kms:GrantIsForAWSResource".to_string(), vec!["true".to_string()]),
                    ],
                    _ => Vec::new(),
                };
                self.authorize(&via_ecr, op, &key, &EncryptionContext::new(), extra).await?;
            }
        }
        if let Some(e) = unusable(&key) {
            return Err(e);
        }
        let name = ecr_grant_name(repository_arn);
        let mut created = None;
        if !self.meta.kms_grants(&key.key_id).await?.iter().any(|g| g.name.as_deref() == Some(name.as_str())) {
            let grant_id = random_hex(32);
            created = Some(grant_id.clone());
            self.meta
                .create_kms_grant(&KmsGrant {
                    grant_token: format!("{}.{grant_id}.{}", key.key_id, random_hex(16)),
                    grant_id,
                    key_id: key.key_id.clone(),
                    name: Some(name),
                    grantee_principal: principal.clone(),
                    retiring_principal: Some(principal),
                    operations: ECR_GRANT_OPERATIONS.map(str::to_string).to_vec(),
                    constraints: None,
                    issuing_account: format!("arn:aws:iam::{}:root", key.account_id),
                    created_at: now_ms(),
                })
                .await?;
        }
        Ok(EcrGrant { key, created })
    }

    /// Retires ECR's grant for a repository (deleted, or never created after all). A key that
    /// is gone has no grant left to retire.
    pub async fn retire_ecr_grant(&self, key_arn: &str, repository_arn: &str) -> Result<()> {
        let Some(key_id) = key_arn.rsplit_once(":key/").map(|(_, id)| id) else { return Ok(()) };
        let name = ecr_grant_name(repository_arn);
        for g in self.meta.kms_grants(key_id).await? {
            if g.name.as_deref() == Some(name.as_str()) && g.grantee_principal == self.ecr_principal() {
                self.meta.delete_kms_grant(&g.grant_id).await?;
            }
        }
        Ok(())
    }

    async fn store_new_key(
        &self,
        account: &str,
        description: String,
        key_manager: &str,
        policy: String,
        rotation_period_days: Option<i64>,
    ) -> Result<KmsKey> {
        let key_id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let material = self.new_material(&key_id, None, now);
        let key = KmsKey {
            arn: self.key_arn(account, &key_id),
            key_id,
            account_id: account.to_string(),
            description,
            key_manager: key_manager.to_string(),
            state: KmsKeyState::Enabled,
            policy,
            created_at: now,
            deletion_date: None,
            pending_window_days: None,
            rotation_period_days,
            next_rotation_at: rotation_period_days.map(|d| now + d * DAY_MS),
            current_material: material.material_id.clone(),
        };
        self.meta.create_kms_key(&key, &material).await?;
        Ok(key)
    }

    fn new_material(&self, key_id: &str, rotation_type: Option<&str>, now: i64) -> KmsKeyMaterial {
        let material_id = ciphertext::new_material_id();
        let bytes = berth_envelope::generate_key();
        let sealed =
            self.keys.seal(SealedKind::KmsKeyMaterial, &berth_meta::kms_material_key(key_id, &material_id), &bytes);
        KmsKeyMaterial {
            key_id: key_id.to_string(),
            material_id,
            sealed_material: sealed,
            rotation_type: rotation_type.map(str::to_string),
            created_at: now,
        }
    }

    async fn rotate(&self, key: &KmsKey, rotation_type: &str, next_rotation_at: Option<i64>) -> Result<()> {
        let material = self.new_material(&key.key_id, Some(rotation_type), now_ms());
        if !self.meta.rotate_kms_key(&material, next_rotation_at).await? {
            return Err(not_found(&key.arn));
        }
        tracing::info!(key = %key.arn, material = %material.material_id, rotation_type, "KMS key rotated");
        Ok(())
    }

    /// The plaintext of one of a key's materials.
    async fn material(&self, key: &KmsKey, material_id: &str) -> Result<Option<[u8; 32]>> {
        let materials = self.meta.kms_key_materials(&key.key_id).await?;
        let Some(m) = materials.iter().find(|m| m.material_id == material_id) else { return Ok(None) };
        let opened = self
            .keys
            .open(
                SealedKind::KmsKeyMaterial,
                &berth_meta::kms_material_key(&key.key_id, material_id),
                m.sealed_material.as_bytes(),
            )
            .map_err(|e| KmsError::Internal(e.to_string()))?;
        let bytes: [u8; 32] = opened
            .try_into()
            .map_err(|_| KmsError::Internal(format!("the material of {} is not 32 bytes", key.arn)))?;
        Ok(Some(bytes))
    }

    /// Authorizes `operation` (KMS's name) on `key`: the key policy's rule, then the caller's
    /// grants for what that leaves implicitly denied.
    async fn authorize(
        &self,
        who: &KmsCaller<'_>,
        operation: &str,
        key: &KmsKey,
        context: &EncryptionContext,
        extra: Vec<(String, Vec<String>)>,
    ) -> Result<()> {
        let denied = match self.key_policy_decision(who, operation, key, context, extra).await? {
            Ok(()) => return Ok(()),
            Err(denied) => denied,
        };
        if !denied.explicit {
            let grants = self.meta.kms_grants(&key.key_id).await?;
            if grants.iter().any(|g| grants::grant_allows(g, &who.caller.arn, operation, context)) {
                return Ok(());
            }
        }
        Err(denied.into())
    }

    /// The key-policy rule's decision alone (no grants), with the request's KMS condition keys.
    async fn key_policy_decision(
        &self,
        who: &KmsCaller<'_>,
        operation: &str,
        key: &KmsKey,
        context: &EncryptionContext,
        extra: Vec<(String, Vec<String>)>,
    ) -> Result<std::result::Result<(), AccessDenied>> {
        let mut keys = context_keys(context);
        keys.extend(extra);
        keys.extend(caller_keys(who));
        let action = format!("kms:{operation}");
        Ok(who.authorizer.authorize_with_key_policy(who.caller, &action, key_target(key), who.env, &keys).await?)
    }

    /// Authorizes an IAM-only action (no key policy applies) on resource `*`.
    async fn authorize_account(&self, who: &KmsCaller<'_>, operation: &str) -> Result<()> {
        let action = format!("kms:{operation}");
        let target = Target::Resource { arn: "*", account: &who.caller.account_id };
        who.authorizer.authorize(who.caller, &action, target, who.env).await??;
        Ok(())
    }

    /// Resolves and authorizes in one step, for the operations on one key.
    async fn key_for(&self, who: &KmsCaller<'_>, operation: &str, key_ref: &str) -> Result<KmsKey> {
        let key = self.resolve(&who.caller.account_id, key_ref, operation == "DescribeKey").await?;
        self.authorize(who, operation, &key, &EncryptionContext::new(), Vec::new()).await?;
        Ok(key)
    }

    /// Checks a key policy's text: a resource policy of at most 32 KiB; unless
    /// `bypass_lockout`, one that still lets the caller change it.
    async fn check_policy(&self, who: &KmsCaller<'_>, key_arn: &str, text: &str, bypass_lockout: bool) -> Result<()> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(KmsError::LimitExceeded(format!("A key policy is at most {MAX_POLICY_BYTES} bytes.")));
        }
        berth_iam::PolicyDocument::parse(text, berth_iam::PolicyKind::Resource)
            .map_err(|e| KmsError::MalformedPolicyDocument(format!("The key policy is not valid: {e}")))?;
        if bypass_lockout {
            return Ok(());
        }
        let account = &who.caller.account_id;
        let lockout = who
            .authorizer
            .authorize_with_key_policy(
                who.caller,
                "kms:PutKeyPolicy",
                KeyTarget { arn: key_arn, account, policy: text },
                who.env,
                &caller_keys(who),
            )
            .await?;
        if lockout.is_err() {
            return Err(KmsError::MalformedPolicyDocument(
                "The new key policy will not allow you to update the key policy in the future.".into(),
            ));
        }
        Ok(())
    }

    pub async fn create_key(&self, who: &KmsCaller<'_>, req: NewKey) -> Result<KeyMetadata> {
        self.authorize_account(who, "CreateKey").await?;
        let account = who.caller.account_id.clone();
        for (what, given, only) in [
            ("KeyUsage", &req.key_usage, "ENCRYPT_DECRYPT"),
            ("KeySpec", &req.key_spec, "SYMMETRIC_DEFAULT"),
            ("Origin", &req.origin, "AWS_KMS"),
        ] {
            if let Some(v) = given
                && v != only
            {
                return Err(KmsError::Unsupported(format!("Berth's KMS makes {only} keys only, not {what} {v}.")));
            }
        }
        if req.multi_region {
            return Err(KmsError::Unsupported("Berth's KMS makes single-region keys only.".into()));
        }
        if !req.tags.is_empty() {
            return Err(KmsError::Tag("Berth's KMS does not keep tags on keys.".into()));
        }
        let description = req.description.unwrap_or_default();
        if description.len() > MAX_DESCRIPTION {
            return Err(KmsError::Validation(format!("A key's description is at most {MAX_DESCRIPTION} characters.")));
        }
        let policy = match req.policy {
            Some(p) => {
                self.check_policy(who, &self.key_arn(&account, "*"), &p, req.bypass_policy_lockout_safety_check)
                    .await?;
                p
            }
            None => grants::default_key_policy(&account),
        };
        let key = self.store_new_key(&account, description, "CUSTOMER", policy, None).await?;
        tracing::info!(key = %key.arn, by = %who.caller.arn, "KMS key created");
        Ok(key)
    }

    pub async fn describe_key(&self, who: &KmsCaller<'_>, key_ref: &str) -> Result<KeyMetadata> {
        self.key_for(who, "DescribeKey", key_ref).await
    }

    /// `account`'s keys after `marker`.
    pub async fn list_keys(
        &self,
        who: &KmsCaller<'_>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Listed<KmsKey>> {
        self.authorize_account(who, "ListKeys").await?;
        let limit = page_limit(limit, 100)?;
        let mut after = marker.unwrap_or("").to_string();
        let mut keys = Vec::new();
        // Keys whose deletion date has passed are deleted as they are met, and the page filled
        // from further on, so a listing never ends early.
        while keys.len() <= limit {
            let batch = self.meta.kms_keys(&who.caller.account_id, &after, limit + 1).await?;
            let Some(last) = batch.last() else { break };
            after = last.key_id.clone();
            let full = batch.len() == limit + 1;
            for k in batch {
                if self.key_by_id(&k.key_id).await?.is_some() {
                    keys.push(k);
                }
            }
            if !full {
                break;
            }
        }
        Ok(page(keys, limit, |k| k.key_id.clone()))
    }

    pub async fn enable_key(&self, who: &KmsCaller<'_>, key_ref: &str) -> Result<()> {
        let key = self.key_for(who, "EnableKey", key_ref).await?;
        self.change(key, |k| {
            if k.state == KmsKeyState::PendingDeletion {
                return Err(pending_deletion(k));
            }
            k.state = KmsKeyState::Enabled;
            Ok(())
        })
        .await
        .map(drop)
    }

    pub async fn disable_key(&self, who: &KmsCaller<'_>, key_ref: &str) -> Result<()> {
        let key = self.key_for(who, "DisableKey", key_ref).await?;
        self.change(key, |k| {
            if k.state == KmsKeyState::PendingDeletion {
                return Err(pending_deletion(k));
            }
            k.state = KmsKeyState::Disabled;
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Applies `edit` to the key and stores it only if nobody changed the key since it was
    /// read (compare-and-set); if somebody did, reads it again and applies `edit` to that, so
    /// two changes racing on nodes never undo each other.
    async fn change(&self, mut key: KmsKey, edit: impl Fn(&mut KmsKey) -> Result<()>) -> Result<KmsKey> {
        for _ in 0..8 {
            let mut changed = key.clone();
            edit(&mut changed)?;
            if self.meta.update_kms_key(&changed, &key).await? {
                return Ok(changed);
            }
            key = self.key_by_id(&key.key_id).await?.ok_or_else(|| not_found(&key.arn))?;
        }
        Err(KmsError::Internal(format!("{} kept changing while it was being changed", key.arn)))
    }

    /// Schedules the key's deletion `window_days` (7–30, 30 by default) from now.
    pub async fn schedule_key_deletion(
        &self,
        who: &KmsCaller<'_>,
        key_ref: &str,
        window_days: Option<i64>,
    ) -> Result<KmsKey> {
        let window = window_days.unwrap_or(30);
        if !(7..=30).contains(&window) {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value '{window}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30"
            )));
        }
        let key = self.key_for(who, "ScheduleKeyDeletion", key_ref).await?;
        let key = self
            .change(key, |k| {
                if k.state == KmsKeyState::PendingDeletion {
                    return Err(pending_deletion(k));
                }
                k.state = KmsKeyState::PendingDeletion;
                k.deletion_date = Some(now_ms() + window * DAY_MS);
                k.pending_window_days = Some(window);
                Ok(())
            })
            .await?;
        tracing::info!(key = %key.arn, window, by = %who.caller.arn, "KMS key scheduled for deletion");
        Ok(key)
    }

    /// Cancels a scheduled deletion; the key is then disabled, as in KMS.
    pub async fn cancel_key_deletion(&self, who: &KmsCaller<'_>, key_ref: &str) -> Result<KmsKey> {
        let key = self.key_for(who, "CancelKeyDeletion", key_ref).await?;
        self.change(key, |k| {
            if k.state != KmsKeyState::PendingDeletion {
                return Err(KmsError::InvalidState(format!("{} is not pending deletion.", k.arn)));
            }
            k.state = KmsKeyState::Disabled;
            k.deletion_date = None;
            k.pending_window_days = None;
            Ok(())
        })
        .await
    }

    /// Turns automatic rotation on, every `period_days` (90–2560, 365 by default).
    pub async fn enable_key_rotation(
        &self,
        who: &KmsCaller<'_>,
        key_ref: &str,
        period_days: Option<i64>,
    ) -> Result<()> {
        let period = period_days.unwrap_or(DEFAULT_ROTATION_DAYS);
        if !(90..=2560).contains(&period) {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value '{period}' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between 90 and 2560"
            )));
        }
        let key = self.key_for(who, "EnableKeyRotation", key_ref).await?;
        self.change(key, |k| {
            if let Some(e) = unusable(k) {
                return Err(e);
            }
            k.next_rotation_at = Some(
                k.next_rotation_at
                    .filter(|_| k.rotation_period_days == Some(period))
                    .unwrap_or(now_ms() + period * DAY_MS),
            );
            k.rotation_period_days = Some(period);
            Ok(())
        })
        .await
        .map(drop)
    }

    pub async fn disable_key_rotation(&self, who: &KmsCaller<'_>, key_ref: &str) -> Result<()> {
        let key = self.key_for(who, "DisableKeyRotation", key_ref).await?;
        self.change(key, |k| {
            if let Some(e) = unusable(k) {
                return Err(e);
            }
            k.rotation_period_days = None;
            k.next_rotation_at = None;
            Ok(())
        })
        .await
        .map(drop)
    }

    pub async fn key_rotation_status(&self, who: &KmsCaller<'_>, key_ref: &str) -> Result<RotationStatus> {
        let key = self.key_for(who, "GetKeyRotationStatus", key_ref).await?;
        if key.state == KmsKeyState::PendingDeletion {
            return Err(pending_deletion(&key));
        }
        Ok(RotationStatus {
            key_arn: key.arn,
            enabled: key.rotation_period_days.is_some(),
            period_days: key.rotation_period_days,
            next_rotation_at: key.next_rotation_at,
        })
    }

    /// Rotates the key's material now (at most 25 times per key); the old stays for what it sealed.
    pub async fn rotate_key_on_demand(&self, who: &KmsCaller<'_>, key_ref: &str) -> Result<String> {
        let key = self.key_for(who, "RotateKeyOnDemand", key_ref).await?;
        if let Some(e) = unusable(&key) {
            return Err(e);
        }
        let on_demand = self
            .meta
            .kms_key_materials(&key.key_id)
            .await?
            .iter()
            .filter(|m| m.rotation_type.as_deref() == Some("ON_DEMAND"))
            .count();
        if on_demand >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(format!(
                "{} has been rotated on demand {MAX_ON_DEMAND_ROTATIONS} times, the most a key may be.",
                key.arn
            )));
        }
        self.rotate(&key, "ON_DEMAND", key.next_rotation_at).await?;
        Ok(key.arn)
    }

    /// The key's rotations (every material after the first), oldest first; with `all`, its
    /// first material too.
    pub async fn list_key_rotations(
        &self,
        who: &KmsCaller<'_>,
        key_ref: &str,
        all: bool,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<(KmsKey, Listed<KmsKeyMaterial>)> {
        let key = self.key_for(who, "ListKeyRotations", key_ref).await?;
        if key.state == KmsKeyState::PendingDeletion {
            return Err(pending_deletion(&key));
        }
        let limit = page_limit(limit, 100)?;
        let mut materials: Vec<KmsKeyMaterial> = self
            .meta
            .kms_key_materials(&key.key_id)
            .await?
            .into_iter()
            .filter(|m| all || m.rotation_type.is_some())
            .collect();
        if let Some(marker) = marker {
            let Some(at) = materials.iter().position(|m| m.material_id == marker) else {
                return Err(KmsError::InvalidMarker("The marker does not come from this listing.".into()));
            };
            materials.drain(..=at);
        }
        Ok((key, page(materials, limit, |m| m.material_id.clone())))
    }

    pub async fn create_alias(&self, who: &KmsCaller<'_>, alias_name: &str, target: &str) -> Result<()> {
        if !valid_alias_name(alias_name) {
            return Err(KmsError::Validation(format!(
                "Alias name '{alias_name}' must begin with 'alias/' and hold only letters, digits, '/', '_' and '-'."
            )));
        }
        if alias_name.starts_with("alias/aws/") {
            return Err(KmsError::InvalidAliasName("Alias names that begin with 'alias/aws/' are reserved.".into()));
        }
        if target.contains("alias/") {
            return Err(KmsError::Validation("An alias must point to a key, not to another alias.".into()));
        }
        let account = who.caller.account_id.clone();
        let key = self.key_for(who, "CreateAlias", target).await?;
        if key.account_id != account {
            return Err(not_found(target));
        }
        if key.state == KmsKeyState::PendingDeletion {
            return Err(pending_deletion(&key));
        }
        let now = now_ms();
        let alias = KmsAlias {
            account_id: account.clone(),
            alias_name: alias_name.to_string(),
            target_key_id: key.key_id,
            created_at: now,
            updated_at: now,
        };
        if !self.meta.create_kms_alias(&alias).await? {
            return Err(KmsError::AlreadyExists(format!(
                "An alias with the name {} already exists",
                self.alias_arn(&account, alias_name)
            )));
        }
        Ok(())
    }

    /// The account's aliases (of one key, with `key_ref`), in name order after `marker`.
    pub async fn list_aliases(
        &self,
        who: &KmsCaller<'_>,
        key_ref: Option<&str>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<Listed<KmsAlias>> {
        self.authorize_account(who, "ListAliases").await?;
        let limit = page_limit(limit, 100)?;
        let account = &who.caller.account_id;
        let key_id = match key_ref {
            Some(r) => Some(self.resolve(account, r, false).await?.key_id),
            None => None,
        };
        let aliases: Vec<KmsAlias> = self
            .meta
            .kms_aliases(account)
            .await?
            .into_iter()
            .filter(|a| marker.is_none_or(|m| a.alias_name.as_str() > m))
            .filter(|a| key_id.as_ref().is_none_or(|k| &a.target_key_id == k))
            .collect();
        Ok(page(aliases, limit, |a| a.alias_name.clone()))
    }

    pub async fn delete_alias(&self, who: &KmsCaller<'_>, alias_name: &str) -> Result<()> {
        let account = who.caller.account_id.clone();
        if alias_name.starts_with("alias/aws/") {
            return Err(KmsError::Validation("AWS-managed aliases cannot be deleted.".into()));
        }
        let key = self.resolve(&account, alias_name, false).await?;
        self.authorize(who, "DeleteAlias", &key, &EncryptionContext::new(), Vec::new()).await?;
        if !self.meta.delete_kms_alias(&account, alias_name).await? {
            return Err(KmsError::NotFound(format!("Alias {} is not found.", self.alias_arn(&account, alias_name))));
        }
        Ok(())
    }

    pub async fn key_policy(&self, who: &KmsCaller<'_>, key_ref: &str, name: Option<&str>) -> Result<String> {
        check_policy_name(name)?;
        Ok(self.key_for(who, "GetKeyPolicy", key_ref).await?.policy)
    }

    pub async fn put_key_policy(
        &self,
        who: &KmsCaller<'_>,
        key_ref: &str,
        name: Option<&str>,
        policy: &str,
        bypass_lockout: bool,
    ) -> Result<()> {
        check_policy_name(name)?;
        let key = self.key_for(who, "PutKeyPolicy", key_ref).await?;
        self.check_policy(who, &key.arn, policy, bypass_lockout).await?;
        let key = self
            .change(key, |k| {
                k.policy = policy.to_string();
                Ok(())
            })
            .await?;
        tracing::info!(key = %key.arn, by = %who.caller.arn, "KMS key policy replaced");
        Ok(())
    }

    /// Creates a grant; returns its id and token. A caller allowed only by a grant of its own
    /// may pass on no more operations than that grant has.
    pub async fn create_grant(&self, who: &KmsCaller<'_>, req: NewGrant) -> Result<(String, String)> {
        if req.operations.is_empty() {
            return Err(KmsError::Validation("A grant needs at least one operation.".into()));
        }
        if let Some(op) = req.operations.iter().find(|o| !GRANT_OPERATIONS.contains(&o.as_str())) {
            return Err(KmsError::Validation(format!("{op} is not a grant operation of a symmetric encryption key.")));
        }
        if req.grantee_principal.is_empty() || req.grantee_principal.len() > 256 {
            return Err(KmsError::Validation("GranteePrincipal must be 1 to 256 characters.".into()));
        }
        let key = self.resolve(&who.caller.account_id, &req.key_id, false).await?;
        let mut extra = vec![
            ("kms:GrantOperations".to_string(), req.operations.clone()),
            ("kms:GranteePrincipal".to_string(), vec![req.grantee_principal.clone()]),
        ];
        if let Some(r) = &req.retiring_principal {
            extra.push(("kms:RetiringPrincipal".into(), vec![r.clone()]));
        }
        if who.via_service.is_some() {
            extra.push(("kms:GrantIsForAWSResource".into(), vec!["true".into()]));
        }
        // The key policy, or else a grant of the caller's own that holds CreateGrant, every
        // operation passed on and constraints no looser than the new grant's (an explicit deny
        // is final).
        if let Err(denied) =
            self.key_policy_decision(who, "CreateGrant", &key, &EncryptionContext::new(), extra).await?
        {
            if denied.explicit {
                return Err(denied.into());
            }
            let grants = self.meta.kms_grants(&key.key_id).await?;
            let covering = grants.iter().any(|g| {
                g.grantee_principal == who.caller.arn
                    && g.operations.iter().any(|o| o == "CreateGrant")
                    && req.operations.iter().all(|o| g.operations.contains(o))
                    && GrantConstraints::from_stored(g.constraints.as_deref())
                        .is_some_and(|held| req.constraints.at_least_as_strict_as(&held))
            });
            if !covering {
                return Err(denied.into());
            }
        }
        if let Some(e) = unusable(&key) {
            return Err(e);
        }
        if req.dry_run {
            return Err(KmsError::DryRun);
        }
        // A grant of the same name with the same grantee, operations and constraints is the
        // same grant (KMS's idempotent CreateGrant).
        let constraints = (!req.constraints.is_empty()).then(|| req.constraints.to_json().to_string());
        if let Some(name) = &req.name {
            let existing = self.meta.kms_grants(&key.key_id).await?;
            if let Some(g) = existing.iter().find(|g| {
                g.name.as_ref() == Some(name)
                    && g.grantee_principal == req.grantee_principal
                    && g.retiring_principal == req.retiring_principal
                    && g.operations == req.operations
                    && g.constraints == constraints
            }) {
                return Ok((g.grant_id.clone(), g.grant_token.clone()));
            }
        }
        let grant_id = random_hex(32);
        // The token names the key, so RetireGrant can find a grant by its token alone.
        let grant_token = format!("{}.{grant_id}.{}", key.key_id, random_hex(16));
        let grant = KmsGrant {
            grant_id: grant_id.clone(),
            key_id: key.key_id.clone(),
            name: req.name,
            grantee_principal: req.grantee_principal,
            retiring_principal: req.retiring_principal,
            operations: req.operations,
            constraints,
            issuing_account: format!("arn:aws:iam::{}:root", who.caller.account_id),
            grant_token: grant_token.clone(),
            created_at: now_ms(),
        };
        self.meta.create_kms_grant(&grant).await?;
        Ok((grant_id, grant_token))
    }

    pub async fn list_grants(
        &self,
        who: &KmsCaller<'_>,
        key_ref: &str,
        grant_id: Option<&str>,
        grantee: Option<&str>,
        limit: Option<i64>,
        marker: Option<&str>,
    ) -> Result<(KmsKey, Listed<KmsGrant>)> {
        let key = self.key_for(who, "ListGrants", key_ref).await?;
        let limit = page_limit(limit, 50)?;
        let grants: Vec<KmsGrant> = self
            .meta
            .kms_grants(&key.key_id)
            .await?
            .into_iter()
            .filter(|g| marker.is_none_or(|m| g.grant_id.as_str() > m))
            .filter(|g| grant_id.is_none_or(|id| g.grant_id == id))
            .filter(|g| grantee.is_none_or(|p| g.grantee_principal == p))
            .collect();
        Ok((key, page(grants, limit, |g| g.grant_id.clone())))
    }

    /// Retires a grant, named by its token or by key and grant id: its retiring principal or
    /// its grantee (if it holds `RetireGrant`) may, as may whoever the key policy allows
    /// `kms:RetireGrant`.
    pub async fn retire_grant(
        &self,
        who: &KmsCaller<'_>,
        token: Option<&str>,
        key_ref: Option<&str>,
        grant_id: Option<&str>,
        dry_run: bool,
    ) -> Result<()> {
        let (key, grant) = match (token, key_ref, grant_id) {
            (Some(token), _, _) => {
                let mut parts = token.splitn(3, '.');
                let (Some(key_id), Some(id)) = (parts.next(), parts.next()) else {
                    return Err(KmsError::InvalidGrantToken("The grant token is not valid.".into()));
                };
                let key = self
                    .key_by_id(key_id)
                    .await?
                    .ok_or_else(|| KmsError::InvalidGrantToken("The grant token is not valid.".into()))?;
                let grant = self
                    .meta
                    .kms_grants(&key.key_id)
                    .await?
                    .into_iter()
                    .find(|g| g.grant_id == id && g.grant_token == token);
                (key, grant.ok_or_else(|| KmsError::NotFound("The grant does not exist.".into()))?)
            }
            (None, Some(key_ref), Some(id)) => {
                let key = self.resolve(&who.caller.account_id, key_ref, false).await?;
                let grant = self.meta.kms_grants(&key.key_id).await?.into_iter().find(|g| g.grant_id == id);
                let grant =
                    grant.ok_or_else(|| KmsError::NotFound(format!("Grant {id} does not exist on {}.", key.arn)))?;
                (key, grant)
            }
            _ => return Err(KmsError::Validation("Give either GrantToken, or both KeyId and GrantId.".into())),
        };
        let by_grant = grant.retiring_principal.as_deref() == Some(who.caller.arn.as_str())
            || (grant.grantee_principal == who.caller.arn && grant.operations.iter().any(|o| o == "RetireGrant"));
        if !by_grant {
            self.authorize(who, "RetireGrant", &key, &EncryptionContext::new(), Vec::new()).await?;
        }
        if dry_run {
            return Err(KmsError::DryRun);
        }
        self.meta.delete_kms_grant(&grant.grant_id).await?;
        Ok(())
    }

    pub async fn revoke_grant(&self, who: &KmsCaller<'_>, key_ref: &str, grant_id: &str, dry_run: bool) -> Result<()> {
        let key = self.key_for(who, "RevokeGrant", key_ref).await?;
        if !self.meta.kms_grants(&key.key_id).await?.iter().any(|g| g.grant_id == grant_id) {
            return Err(KmsError::NotFound(format!("Grant {grant_id} does not exist on {}.", key.arn)));
        }
        if dry_run {
            return Err(KmsError::DryRun);
        }
        self.meta.delete_kms_grant(grant_id).await?;
        Ok(())
    }

    /// Seals `plaintext` under the key's current material, bound to `context`.
    async fn seal(&self, key: &KmsKey, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>> {
        let material = self
            .material(key, &key.current_material)
            .await?
            .ok_or_else(|| KmsError::Internal(format!("{} has no current material", key.arn)))?;
        let mut blob = ciphertext::header(&key.key_id, &key.current_material)
            .ok_or_else(|| KmsError::Internal(format!("{} has a malformed id or material id", key.arn)))?;
        let aad = ciphertext::aad(&blob, context);
        blob.extend_from_slice(&berth_envelope::wrap(&material, &aad, plaintext));
        Ok(blob)
    }

    /// The key a cryptographic request names, authorized and usable.
    async fn crypto_key(
        &self,
        who: &KmsCaller<'_>,
        operation: &str,
        key_ref: &str,
        context: &EncryptionContext,
        algorithm: Option<&str>,
    ) -> Result<KmsKey> {
        check_algorithm(algorithm)?;
        let key = self.resolve(&who.caller.account_id, key_ref, true).await?;
        self.authorize(who, operation, &key, context, Vec::new()).await?;
        if let Some(e) = unusable(&key) {
            return Err(e);
        }
        Ok(key)
    }

    pub async fn encrypt(
        &self,
        who: &KmsCaller<'_>,
        key_ref: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
        algorithm: Option<&str>,
        dry_run: bool,
    ) -> Result<(String, Vec<u8>)> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length between 1 and {MAX_PLAINTEXT}"
            )));
        }
        let key = self.crypto_key(who, "Encrypt", key_ref, context, algorithm).await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        Ok((key.arn.clone(), self.seal(&key, context, plaintext).await?))
    }

    /// A fresh data key of `bytes` bytes (or `spec`: `AES_256`, `AES_128`), in plain text and
    /// sealed under the key.
    pub async fn generate_data_key(
        &self,
        who: &KmsCaller<'_>,
        key_ref: &str,
        bytes: Option<i64>,
        spec: Option<&str>,
        context: &EncryptionContext,
        dry_run: bool,
    ) -> Result<DataKey> {
        let len = match (bytes, spec) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(KmsError::Validation("Please specify either number of bytes or key spec.".into()));
            }
            (Some(n), None) if (1..=1024).contains(&n) => n as usize,
            (Some(n), None) => {
                return Err(KmsError::Validation(format!(
                    "1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
                )));
            }
            (None, Some("AES_256")) => 32,
            (None, Some("AES_128")) => 16,
            (None, Some(other)) => {
                return Err(KmsError::Validation(format!(
                    "1 validation error detected: Value '{other}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]"
                )));
            }
        };
        let key = self.crypto_key(who, "GenerateDataKey", key_ref, context, None).await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let plaintext = hex::decode(random_hex(len)).expect("hex");
        let ciphertext = self.seal(&key, context, &plaintext).await?;
        Ok(DataKey { key_arn: key.arn, material_id: key.current_material, plaintext, ciphertext })
    }

    /// Opens a ciphertext blob under the key it names (which `key_ref`, if given, must be).
    pub async fn decrypt(
        &self,
        who: &KmsCaller<'_>,
        blob: &[u8],
        key_ref: Option<&str>,
        context: &EncryptionContext,
        algorithm: Option<&str>,
        dry_run: bool,
    ) -> Result<Decrypted> {
        check_algorithm(algorithm)?;
        let invalid = || KmsError::InvalidCiphertext(String::new());
        let ct = Ciphertext::parse(blob).ok_or_else(invalid)?;
        let key = self.key_by_id(&ct.key_id.to_string()).await?.ok_or_else(invalid)?;
        if let Some(r) = key_ref {
            let named = self.resolve(&who.caller.account_id, r, false).await?;
            if named.key_id != key.key_id {
                return Err(KmsError::IncorrectKey(
                    "The key ID in the request does not identify a CMK that can perform this operation.".into(),
                ));
            }
        }
        self.authorize(who, "Decrypt", &key, context, Vec::new()).await?;
        if let Some(e) = unusable(&key) {
            return Err(e);
        }
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let plaintext = self.open(&key, &ct, context).await?;
        Ok(Decrypted { key_arn: key.arn, material_id: ct.material_id, plaintext })
    }

    /// Opens a parsed ciphertext under `key`, which it must name.
    async fn open(&self, key: &KmsKey, ct: &Ciphertext<'_>, context: &EncryptionContext) -> Result<Vec<u8>> {
        let invalid = || KmsError::InvalidCiphertext(String::new());
        if ct.key_id.to_string() != key.key_id {
            return Err(invalid());
        }
        let material = self.material(key, &ct.material_id).await?.ok_or_else(invalid)?;
        berth_envelope::unwrap(&material, &ct.aad(context), ct.sealed).map_err(|_| invalid())
    }

    /// The key a key ARN names, if it exists.
    async fn key_by_arn(&self, key_arn: &str) -> Result<KmsKey> {
        let key_id = key_arn.rsplit_once(":key/").map(|(_, id)| id).ok_or_else(|| not_found(key_arn))?;
        self.key_by_id(key_id).await?.ok_or_else(|| not_found(key_arn))
    }

    /// The key ECR uses for a repository's data: it exists, ECR's grant for the repository still
    /// holds `operation`, and it is enabled — or what KMS would answer ECR.
    async fn ecr_use(&self, key_arn: &str, repository_arn: &str, operation: &str) -> Result<KmsKey> {
        let key = self.key_by_arn(key_arn).await?;
        let (name, principal) = (ecr_grant_name(repository_arn), self.ecr_principal());
        let granted = self.meta.kms_grants(&key.key_id).await?.iter().any(|g| {
            g.name.as_deref() == Some(name.as_str())
                && g.grantee_principal == principal
                && g.operations.iter().any(|o| o == operation)
        });
        if !granted {
            return Err(KmsError::AccessDenied(format!(
                "{principal} is not authorized to perform: kms:{operation} on resource: {key_arn}: the grant for {repository_arn} was retired or revoked"
            )));
        }
        if let Some(e) = unusable(&key) {
            return Err(e);
        }
        Ok(key)
    }

    /// Seals `plaintext` (a blob's data keys) under a repository's key, as ECR does through the
    /// grant the repository's creation gave it.
    pub async fn ecr_seal(
        &self,
        key_arn: &str,
        repository_arn: &str,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let key = self.ecr_use(key_arn, repository_arn, "Encrypt").await?;
        self.seal(&key, context, plaintext).await
    }

    /// Opens what [`Kms::ecr_seal`] sealed, through the repository's grant.
    pub async fn ecr_open(
        &self,
        key_arn: &str,
        repository_arn: &str,
        context: &EncryptionContext,
        sealed: &[u8],
    ) -> Result<Vec<u8>> {
        let key = self.ecr_use(key_arn, repository_arn, "Decrypt").await?;
        let ct = Ciphertext::parse(sealed).ok_or_else(|| KmsError::InvalidCiphertext(String::new()))?;
        self.open(&key, &ct, context).await
    }

    /// Opens a blob's data keys wrapped under `key_arn` through no repository's grant: ECR
    /// re-wrapping the keys of a blob a commit has just proved it holds (its bytes hashed to
    /// the digest), for the key of another repository, and `berth fsck`. The key must be
    /// usable, as for every other use.
    pub async fn open_as_ecr(&self, key_arn: &str, context: &EncryptionContext, sealed: &[u8]) -> Result<Vec<u8>> {
        let key = self.key_by_arn(key_arn).await?;
        if let Some(e) = unusable(&key) {
            return Err(e);
        }
        let ct = Ciphertext::parse(sealed).ok_or_else(|| KmsError::InvalidCiphertext(String::new()))?;
        self.open(&key, &ct, context).await
    }

    /// Whether `who` may have ECR decrypt with the key `key_arn` for it. The key's own
    /// account's principals pull through ECR's grant (the ECR permission decides); a
    /// principal of another account must also be allowed `kms:Decrypt` by the key policy and
    /// its own IAM policies (the seed's scenario).
    pub async fn check_ecr_decrypt_for(&self, who: &KmsCaller<'_>, key_arn: &str) -> Result<()> {
        let key = self.key_by_arn(key_arn).await?;
        if key.account_id == who.caller.account_id {
            return Ok(());
        }
        let via_ecr = KmsCaller {
            authorizer: who.authorizer,
            caller: who.caller,
            env: who.env,
            via_service: Some(self.ecr_principal()),
        };
        self.authorize(&via_ecr, "Decrypt", &key, &EncryptionContext::new(), Vec::new()).await
    }
}

fn check_policy_name(name: Option<&str>) -> Result<()> {
    match name {
        None | Some("default") => Ok(()),
        Some(other) => {
            Err(KmsError::NotFound(format!("Key policy '{other}' does not exist: a key has one policy, 'default'.")))
        }
    }
}

fn check_algorithm(algorithm: Option<&str>) -> Result<()> {
    match algorithm {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other) => Err(KmsError::InvalidKeyUsage(format!(
            "{other} is not an encryption algorithm of a symmetric key: use SYMMETRIC_DEFAULT."
        ))),
    }
}

#[cfg(test)]
mod tests;
