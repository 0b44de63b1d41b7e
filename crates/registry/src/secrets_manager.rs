//! Secrets Manager's secrets, as the subset of its API Berth serves defines them: names and
//! ARNs, versions and staging labels, scheduled deletion with a recovery window, and values
//! sealed under the master keyring. The pull-through cache's upstream credentials live here.
//! The HTTP surface (`aws secretsmanager … --endpoint-url`) authorizes and then calls these.

use std::sync::Arc;

use base64::Engine as _;
use berth_meta::{
    ManagedSecret, MetaError, MetaStore, NewSecretVersion, SealedKind, SecretCreated, SecretVersion, VersionPut,
    managed_secret_version_key, now_ms,
};

use crate::secrets::MasterKeys;

/// A Secrets Manager error: the exception Secrets Manager names, with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsManagerError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidNextToken(String),
    #[error("{0}")]
    DecryptionFailure(String),
    #[error("{0}")]
    Internal(String),
}

impl SecretsManagerError {
    /// The `__type` Secrets Manager answers with.
    pub fn code(&self) -> &'static str {
        match self {
            SecretsManagerError::ResourceNotFound(_) => "ResourceNotFoundException",
            SecretsManagerError::ResourceExists(_) => "ResourceExistsException",
            SecretsManagerError::InvalidParameter(_) => "InvalidParameterException",
            SecretsManagerError::InvalidRequest(_) => "InvalidRequestException",
            SecretsManagerError::InvalidNextToken(_) => "InvalidNextTokenException",
            SecretsManagerError::DecryptionFailure(_) => "DecryptionFailure",
            SecretsManagerError::Internal(_) => "InternalServiceError",
        }
    }
}

impl From<MetaError> for SecretsManagerError {
    fn from(e: MetaError) -> Self {
        SecretsManagerError::Internal(e.to_string())
    }
}

type Result<T> = std::result::Result<T, SecretsManagerError>;

/// A secret's value: text or bytes, as the API keeps them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    String(String),
    Binary(Vec<u8>),
}

impl SecretValue {
    /// From the request's `SecretString` / `SecretBinary` (base64): at most one, each at most
    /// 65,536 bytes.
    pub fn from_request(string: Option<&str>, binary: Option<&str>) -> Result<Option<Self>> {
        let value = match (string, binary) {
            (Some(_), Some(_)) => {
                return Err(SecretsManagerError::InvalidParameter(
                    "You can't specify both a binary secret value and a string secret value in the same secret.".into(),
                ));
            }
            (Some(s), None) => SecretValue::String(s.to_string()),
            (None, Some(b)) => SecretValue::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| SecretsManagerError::InvalidParameter("SecretBinary is not valid base64.".into()))?,
            ),
            (None, None) => return Ok(None),
        };
        let len = match &value {
            SecretValue::String(s) => s.len(),
            SecretValue::Binary(b) => b.len(),
        };
        if len == 0 || len > MAX_VALUE_BYTES {
            return Err(SecretsManagerError::InvalidParameter(format!(
                "The secret value must be between 1 and {MAX_VALUE_BYTES} bytes."
            )));
        }
        Ok(Some(value))
    }

    /// What is sealed: a tag byte, then the text or the bytes.
    fn to_plaintext(&self) -> Vec<u8> {
        match self {
            SecretValue::String(s) => [b"S".as_slice(), s.as_bytes()].concat(),
            SecretValue::Binary(b) => [b"B".as_slice(), b].concat(),
        }
    }

    fn from_plaintext(p: &[u8]) -> Result<Self> {
        match p.split_first() {
            Some((b'S', rest)) => String::from_utf8(rest.to_vec())
                .map(SecretValue::String)
                .map_err(|_| SecretsManagerError::DecryptionFailure("the stored value is not text".into())),
            Some((b'B', rest)) => Ok(SecretValue::Binary(rest.to_vec())),
            _ => Err(SecretsManagerError::DecryptionFailure("the stored value is not a secret value".into())),
        }
    }
}

const MAX_VALUE_BYTES: usize = 65_536;
const MAX_NAME: usize = 512;
const CURRENT: &str = "AWSCURRENT";
const DAY_MS: i64 = 86_400_000;

fn not_found() -> SecretsManagerError {
    SecretsManagerError::ResourceNotFound("Secrets Manager can't find the specified secret.".into())
}

fn marked_for_deletion() -> SecretsManagerError {
    SecretsManagerError::InvalidRequest(
        "You can't perform this operation on the secret because it was marked for deletion.".into(),
    )
}

/// Whether `name` is a valid secret name: 1–512 of ASCII letters, digits and `/_+=.@-`.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
}

/// The six random characters Secrets Manager appends to a secret's ARN.
fn arn_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uuid::Uuid::new_v4().as_bytes()[..6].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// What a `ListSecrets` filter matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    pub key: String,
    pub values: Vec<String>,
}

/// `ListSecrets`' request, parsed.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub include_planned_deletion: bool,
    pub filters: Vec<ListFilter>,
    pub descending: bool,
    /// `created-date` (the default), `name`, `last-changed-date` or `last-accessed-date`.
    pub sort_by: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// Whether a secret passes every filter (each filter's values are alternatives; a value
/// starting with `!` negates). Name, description and tag values match by prefix, ignoring case.
pub fn matches_filters(secret: &ManagedSecret, filters: &[ListFilter]) -> bool {
    filters.iter().all(|f| {
        f.values.iter().any(|v| {
            let (negated, v) = match v.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, v.as_str()),
            };
            let prefix = |s: &str| s.to_lowercase().starts_with(&v.to_lowercase());
            let name = prefix(&secret.name);
            let description = secret.description.as_deref().is_some_and(prefix);
            let tag_key = secret.tags.iter().any(|(k, _)| prefix(k));
            let tag_value = secret.tags.iter().any(|(_, t)| prefix(t));
            let hit = match f.key.as_str() {
                "name" => name,
                "description" => description,
                "tag-key" => tag_key,
                "tag-value" => tag_value,
                "all" => name || description || tag_key || tag_value,
                // primary-region, owning-service: Berth's secrets have neither.
                _ => false,
            };
            hit != negated
        })
    })
}

/// One account's secrets.
pub struct SecretsManager {
    meta: Arc<dyn MetaStore>,
    keys: Arc<MasterKeys>,
    account_id: String,
    region: String,
}

impl crate::Registry {
    /// The Secrets Manager of `account_id` in `region` (the ARNs' region).
    pub fn secrets_manager(&self, account_id: &str, region: &str) -> SecretsManager {
        SecretsManager {
            meta: self.meta().clone(),
            keys: self.master_keys.clone(),
            account_id: account_id.to_string(),
            region: region.to_string(),
        }
    }
}

impl SecretsManager {
    /// The ARN `secret_id` names for authorization: an existing secret's, else the name's
    /// without the random suffix (what a partial ARN is).
    pub async fn resource_arn(&self, secret_id: &str) -> Result<String> {
        Ok(match self.find(secret_id).await? {
            Some(s) => s.arn,
            None if secret_id.starts_with("arn:") => secret_id.to_string(),
            None => self.partial_arn(secret_id),
        })
    }

    fn partial_arn(&self, name: &str) -> String {
        format!("arn:aws:secretsmanager:{}:{}:secret:{name}", self.region, self.account_id)
    }

    /// The secret a `SecretId` names — its name, its full ARN or its ARN without the random
    /// suffix — if it exists (a secret whose recovery window has passed does not).
    async fn find(&self, secret_id: &str) -> Result<Option<ManagedSecret>> {
        let found = if let Some(rest) = secret_id.strip_prefix("arn:aws:secretsmanager:") {
            let Some((region_account, name)) = rest.split_once(":secret:") else { return Ok(None) };
            if region_account != format!("{}:{}", self.region, self.account_id) {
                return Ok(None);
            }
            match self.meta.managed_secret_by_arn(secret_id).await? {
                Some(s) => Some(s),
                None => self.meta.managed_secret_by_name(&self.account_id, name).await?,
            }
        } else {
            self.meta.managed_secret_by_name(&self.account_id, secret_id).await?
        };
        match found {
            Some(s) if s.account_id != self.account_id => Ok(None),
            Some(s) if s.deletion_date.is_some_and(|d| d <= now_ms()) => {
                self.meta.delete_managed_secret(&s.arn).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    async fn existing(&self, secret_id: &str) -> Result<ManagedSecret> {
        self.find(secret_id).await?.ok_or_else(not_found)
    }

    async fn live(&self, secret_id: &str) -> Result<ManagedSecret> {
        let s = self.existing(secret_id).await?;
        if s.deletion_date.is_some() {
            return Err(marked_for_deletion());
        }
        Ok(s)
    }

    fn version_to_store(
        &self,
        arn: &str,
        version_id: &str,
        value: &SecretValue,
        stages: Vec<String>,
    ) -> NewSecretVersion {
        let key = managed_secret_version_key(arn, version_id);
        NewSecretVersion {
            version_id: version_id.to_string(),
            sealed_value: self.keys.seal(SealedKind::ManagedSecretValue, &key, &value.to_plaintext()),
            stages,
        }
    }

    fn open(&self, arn: &str, version: &SecretVersion) -> Result<SecretValue> {
        let key = managed_secret_version_key(arn, &version.version_id);
        let plain =
            self.keys.open(SealedKind::ManagedSecretValue, &key, version.sealed_value.as_bytes()).map_err(|e| {
                SecretsManagerError::DecryptionFailure(format!("Secrets Manager can't decrypt the secret value: {e}"))
            })?;
        SecretValue::from_plaintext(&plain)
    }

    fn version_id(token: Option<&str>) -> Result<String> {
        match token {
            Some(t) if !(32..=64).contains(&t.len()) => Err(SecretsManagerError::InvalidParameter(
                "ClientRequestToken must be between 32 and 64 characters.".into(),
            )),
            Some(t) => Ok(t.to_string()),
            None => Ok(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// `CreateSecret`: the new secret, and its first version's id when a value was given.
    pub async fn create(
        &self,
        name: &str,
        description: Option<&str>,
        kms_key_id: Option<&str>,
        value: Option<SecretValue>,
        tags: Vec<(String, String)>,
        client_request_token: Option<&str>,
    ) -> Result<(ManagedSecret, Option<String>)> {
        if !valid_secret_name(name) {
            return Err(SecretsManagerError::InvalidParameter(
                "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!"
                    .into(),
            ));
        }
        let now = now_ms();
        let secret = ManagedSecret {
            arn: format!("{}-{}", self.partial_arn(name), arn_suffix()),
            account_id: self.account_id.clone(),
            name: name.to_string(),
            description: description.map(str::to_string),
            kms_key_id: kms_key_id.map(str::to_string),
            tags,
            created_at: now,
            changed_at: now,
            accessed_at: None,
            deletion_date: None,
            versions: Vec::new(),
        };
        let version_id = Self::version_id(client_request_token)?;
        let first = value.as_ref().map(|v| self.version_to_store(&secret.arn, &version_id, v, vec![CURRENT.into()]));
        match self.meta.create_managed_secret(&secret, first.as_ref()).await? {
            SecretCreated::Created => Ok((secret, first.map(|v| v.version_id))),
            SecretCreated::NameTaken => Err(SecretsManagerError::ResourceExists(format!(
                "The operation failed because the secret {name} already exists."
            ))),
            SecretCreated::NameScheduledForDeletion => Err(SecretsManagerError::InvalidRequest(
                "You can't create this secret because a secret with this name is already scheduled for deletion."
                    .into(),
            )),
        }
    }

    /// `GetSecretValue`: the version named by id and/or label (`AWSCURRENT` by default).
    pub async fn get_value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<(ManagedSecret, SecretVersion, SecretValue)> {
        let secret = self.live(secret_id).await?;
        let stage = if version_id.is_none() { Some(stage.unwrap_or(CURRENT)) } else { stage };
        let version = self.meta.secret_version(&secret.arn, version_id, stage).await?.ok_or_else(|| {
            SecretsManagerError::ResourceNotFound(match (version_id, stage) {
                (Some(v), _) => format!("Secrets Manager can't find the specified secret value for VersionId: {v}"),
                (None, s) => format!(
                    "Secrets Manager can't find the specified secret value for staging label: {}",
                    s.unwrap_or(CURRENT)
                ),
            })
        })?;
        let value = self.open(&secret.arn, &version)?;
        // Secrets Manager records the day of the last read.
        self.meta.record_secret_access(&secret.arn, now_ms() / DAY_MS * DAY_MS).await?;
        Ok((secret, version, value))
    }

    /// `PutSecretValue` (and `UpdateSecret` with a value): a new version taking `stages`
    /// (`AWSCURRENT` by default). Repeating a request with the same token and value changes
    /// nothing; the same token with another value is refused.
    pub async fn put_value(
        &self,
        secret_id: &str,
        client_request_token: Option<&str>,
        value: Option<SecretValue>,
        stages: Option<Vec<String>>,
    ) -> Result<(ManagedSecret, String, Vec<String>)> {
        let value = value.ok_or_else(|| {
            SecretsManagerError::InvalidParameter("You must provide either SecretString or SecretBinary.".into())
        })?;
        let secret = self.live(secret_id).await?;
        let stages = stages.unwrap_or_else(|| vec![CURRENT.into()]);
        if stages.is_empty() || stages.len() > 20 || stages.iter().any(|s| s.is_empty() || s.len() > 256) {
            return Err(SecretsManagerError::InvalidParameter(
                "VersionStages must hold 1 to 20 labels of 1 to 256 characters.".into(),
            ));
        }
        let version_id = Self::version_id(client_request_token)?;
        let version = self.version_to_store(&secret.arn, &version_id, &value, stages.clone());
        match self.meta.put_secret_version(&secret.arn, &version).await? {
            VersionPut::Created => Ok((secret, version_id, stages)),
            VersionPut::Exists { sealed_value, stages } => {
                let stored = SecretVersion {
                    version_id: version_id.clone(),
                    sealed_value,
                    stages: stages.clone(),
                    created_at: 0,
                };
                if self.open(&secret.arn, &stored)? == value {
                    Ok((secret, version_id, stages))
                } else {
                    Err(SecretsManagerError::ResourceExists(
                        "You can't modify an existing version, you can only create a new version.".into(),
                    ))
                }
            }
            VersionPut::SecretNotFound => Err(not_found()),
        }
    }

    /// `DescribeSecret`: metadata and version labels, never the value.
    pub async fn describe(&self, secret_id: &str) -> Result<ManagedSecret> {
        self.existing(secret_id).await
    }

    /// `ListSecrets`: a page of the account's secrets and the token of the next.
    pub async fn list(&self, req: &ListRequest) -> Result<(Vec<ManagedSecret>, Option<String>)> {
        let max = req.max_results.unwrap_or(100);
        if !(1..=100).contains(&max) {
            return Err(SecretsManagerError::InvalidParameter("MaxResults must be between 1 and 100.".into()));
        }
        let start = match &req.next_token {
            None => 0,
            Some(t) => base64::engine::general_purpose::STANDARD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse::<usize>().ok()))
                .ok_or_else(|| SecretsManagerError::InvalidNextToken("The NextToken value is not valid.".into()))?,
        };
        let now = now_ms();
        let mut secrets: Vec<ManagedSecret> = self
            .meta
            .managed_secrets(&self.account_id)
            .await?
            .into_iter()
            .filter(|s| s.deletion_date.is_none_or(|d| d > now))
            .filter(|s| req.include_planned_deletion || s.deletion_date.is_none())
            .filter(|s| matches_filters(s, &req.filters))
            .collect();
        match req.sort_by.as_deref().unwrap_or("created-date") {
            "name" => secrets.sort_by(|a, b| a.name.cmp(&b.name)),
            "last-changed-date" => secrets.sort_by_key(|s| (s.changed_at, s.name.clone())),
            "last-accessed-date" => secrets.sort_by_key(|s| (s.accessed_at, s.name.clone())),
            "created-date" => secrets.sort_by_key(|s| (s.created_at, s.name.clone())),
            other => return Err(SecretsManagerError::InvalidParameter(format!("SortBy {other} is not supported."))),
        }
        if req.descending {
            secrets.reverse();
        }
        let end = (start + max as usize).min(secrets.len());
        let next =
            (end < secrets.len()).then(|| base64::engine::general_purpose::STANDARD.encode(format!("offset:{end}")));
        let page = secrets.into_iter().skip(start).take(end.saturating_sub(start)).collect();
        Ok((page, next))
    }

    /// `UpdateSecret`: the description and KMS key given, and a new current version when a
    /// value is given (its id then).
    pub async fn update(
        &self,
        secret_id: &str,
        client_request_token: Option<&str>,
        description: Option<&str>,
        kms_key_id: Option<&str>,
        value: Option<SecretValue>,
    ) -> Result<(ManagedSecret, Option<String>)> {
        let secret = self.live(secret_id).await?;
        if (description.is_some() || kms_key_id.is_some())
            && !self.meta.update_managed_secret(&secret.arn, description, kms_key_id).await?
        {
            return Err(not_found());
        }
        let version = match value {
            Some(v) => Some(self.put_value(&secret.arn, client_request_token, Some(v), None).await?.1),
            None => None,
        };
        Ok((secret, version))
    }

    /// `DeleteSecret`: scheduled after the recovery window (7–30 days, 30 by default), or at
    /// once with `force`; the deletion date.
    pub async fn delete(
        &self,
        secret_id: &str,
        recovery_window_days: Option<i64>,
        force: bool,
    ) -> Result<(ManagedSecret, i64)> {
        if force && recovery_window_days.is_some() {
            return Err(SecretsManagerError::InvalidParameter(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.".into(),
            ));
        }
        if recovery_window_days.is_some_and(|d| !(7..=30).contains(&d)) {
            return Err(SecretsManagerError::InvalidParameter(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).".into(),
            ));
        }
        let secret = self.existing(secret_id).await?;
        if force {
            self.meta.delete_managed_secret(&secret.arn).await?;
            return Ok((secret, now_ms()));
        }
        if secret.deletion_date.is_some() {
            return Err(SecretsManagerError::InvalidRequest(
                "You can't perform this operation on the secret because it was already scheduled for deletion.".into(),
            ));
        }
        let at = now_ms() + recovery_window_days.unwrap_or(30) * DAY_MS;
        if !self.meta.set_secret_deletion(&secret.arn, Some(at)).await? {
            return Err(not_found());
        }
        Ok((secret, at))
    }

    /// `RestoreSecret`: cancels a scheduled deletion.
    pub async fn restore(&self, secret_id: &str) -> Result<ManagedSecret> {
        let secret = self.existing(secret_id).await?;
        if !self.meta.set_secret_deletion(&secret.arn, None).await? {
            return Err(not_found());
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, description: Option<&str>, tags: &[(&str, &str)]) -> ManagedSecret {
        ManagedSecret {
            arn: format!("arn:aws:secretsmanager:us-east-1:1:secret:{name}-abcdef"),
            account_id: "1".into(),
            name: name.into(),
            description: description.map(str::to_string),
            kms_key_id: None,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            created_at: 0,
            changed_at: 0,
            accessed_at: None,
            deletion_date: None,
            versions: Vec::new(),
        }
    }

    fn filter(key: &str, values: &[&str]) -> ListFilter {
        ListFilter { key: key.into(), values: values.iter().map(|v| v.to_string()).collect() }
    }

    #[test]
    fn names_are_letters_digits_and_the_allowed_punctuation() {
        assert!(valid_secret_name("ecr-pullthroughcache/docker-hub"));
        assert!(valid_secret_name("a+b=c.d@e_f"));
        assert!(!valid_secret_name(""));
        assert!(!valid_secret_name("with space"));
        assert!(!valid_secret_name("semi;colon"));
        assert!(!valid_secret_name(&"a".repeat(513)));
    }

    #[test]
    fn filters_match_by_prefix_ignoring_case_and_negate_with_a_bang() {
        let s = secret("ecr-pullthroughcache/Hub", Some("Docker Hub"), &[("team", "platform")]);
        assert!(matches_filters(&s, &[filter("name", &["ECR-pull"])]));
        assert!(!matches_filters(&s, &[filter("name", &["pullthrough"])]));
        assert!(matches_filters(&s, &[filter("description", &["docker"])]));
        assert!(matches_filters(&s, &[filter("tag-key", &["te"]), filter("tag-value", &["plat"])]));
        assert!(matches_filters(&s, &[filter("all", &["platform"])]));
        assert!(!matches_filters(&s, &[filter("name", &["!ecr"])]));
        assert!(matches_filters(&s, &[filter("name", &["!other"])]));
        assert!(matches_filters(&s, &[filter("name", &["nope", "ecr"])]), "values are alternatives");
    }

    #[test]
    fn a_value_is_text_or_bytes_never_both_and_round_trips() {
        assert!(SecretValue::from_request(Some("a"), Some("YQ==")).is_err());
        assert_eq!(SecretValue::from_request(None, None).unwrap(), None);
        let b = SecretValue::from_request(None, Some("AAEC")).unwrap().unwrap();
        assert_eq!(b, SecretValue::Binary(vec![0, 1, 2]));
        assert_eq!(SecretValue::from_plaintext(&b.to_plaintext()).unwrap(), b);
        let s = SecretValue::String("{\"username\":\"u\"}".into());
        assert_eq!(SecretValue::from_plaintext(&s.to_plaintext()).unwrap(), s);
        assert!(SecretValue::from_request(Some(&"x".repeat(65_537)), None).is_err());
        assert!(SecretValue::from_request(None, Some("not base64!")).is_err());
    }
}
