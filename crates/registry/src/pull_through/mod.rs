//! Pull-through cache rules: creating, describing, updating, deleting and validating them,
//! with the credential each names read from Secrets Manager as the service (the caller needs
//! no `secretsmanager:GetSecretValue`, as in ECR), and the upstream contacted to check it.
//! The pure rules (prefixes, URLs, name mapping, which secrets qualify) are berth-rules'.

pub mod fill;
mod spool;
pub(crate) mod state;
pub mod upstream;

use berth_meta::{CappedInsert, MetaError, PullThroughRule, now_ms};
use berth_rules::pull_through::{
    self as rules, CredentialRefusal, MAX_RULES, UpstreamUrl, UpstreamUrlError, check_credential_arn,
};

use crate::secrets_manager::{SecretValue, SecretsManagerError};
use crate::{Registry, RegistryError};
pub use fill::{DEFAULT_REFRESH_SECONDS, FillGrant, IMPORT_ACTION, Refresh, UpstreamFailure};
pub use upstream::{UpstreamCredential, UpstreamError, UpstreamHttp, UpstreamSettings};

/// A rule as `CreatePullThroughCacheRule` takes it.
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    pub prefix: String,
    pub upstream_url: String,
    pub upstream_registry: Option<String>,
    pub credential_arn: Option<String>,
    pub custom_role_arn: Option<String>,
    pub upstream_prefix: Option<String>,
}

/// What `ValidatePullThroughCacheRule` found: the rule, and why it cannot be used, if so.
#[derive(Debug, Clone)]
pub struct RuleValidation {
    pub rule: PullThroughRule,
    pub failure: Option<String>,
}

/// The longest refresh interval a rule may have: a year.
pub const MAX_REFRESH_SECONDS: i64 = 365 * 24 * 3600;

/// Berth has no IAM roles to assume: a rule naming one is refused, with what to do instead.
const NO_ROLES: &str =
    "customRoleArn is not supported: Berth has no IAM roles; give a credentialArn holding an access key";

fn not_found(prefix: &str) -> RegistryError {
    RegistryError::PullThroughRuleNotFound { prefix: prefix.to_string() }
}

fn check_prefix(field: &str, prefix: &str) -> Result<(), RegistryError> {
    rules::validate_prefix(prefix)
        .map_err(|why| RegistryError::InvalidParameter(format!("Invalid parameter at '{field}': {why}")))
}

impl Registry {
    /// The upstream HTTP client every rule's requests go through.
    pub fn upstream_http(&self) -> &UpstreamHttp {
        &self.upstream
    }

    /// An account's rules, in prefix order.
    pub async fn pull_through_rules(&self, account: &str) -> Result<Vec<PullThroughRule>, RegistryError> {
        Ok(self.meta().pull_through_rules(account).await?)
    }

    async fn pull_through_rule(&self, account: &str, prefix: &str) -> Result<PullThroughRule, RegistryError> {
        check_prefix("ecrRepositoryPrefix", prefix)?;
        let prefix = rules::normalize_prefix(prefix);
        self.pull_through_rules(account)
            .await?
            .into_iter()
            .find(|r| r.prefix == prefix)
            .ok_or_else(|| not_found(prefix))
    }

    /// `CreatePullThroughCacheRule`: checked whole (prefixes, URL, credential, that the
    /// upstream answers `/v2/`) before anything is stored, within ECR's quota of 50 rules.
    pub async fn create_pull_through_rule(
        &self,
        account: &str,
        region: &str,
        spec: &RuleSpec,
    ) -> Result<PullThroughRule, RegistryError> {
        check_prefix("ecrRepositoryPrefix", &spec.prefix)?;
        if let Some(up) = &spec.upstream_prefix {
            check_prefix("upstreamRepositoryPrefix", up)?;
        }
        if spec.custom_role_arn.is_some() {
            return Err(RegistryError::InvalidParameter(NO_ROLES.into()));
        }
        let prefix = rules::normalize_prefix(&spec.prefix).to_string();
        let url = self.upstream_url(&spec.upstream_url)?;
        let existing = self.pull_through_rules(account).await?;
        if existing.iter().any(|r| r.prefix == prefix) {
            return Err(RegistryError::PullThroughRuleAlreadyExists { prefix });
        }
        if existing.len() >= MAX_RULES {
            return Err(RegistryError::PullThroughRuleLimit);
        }
        let credential = match &spec.credential_arn {
            Some(arn) => Some(self.rule_credential(account, region, arn).await?),
            None => None,
        };
        let ecr = spec.upstream_registry.as_deref() == Some("ecr");
        upstream::Upstream::new(&self.upstream, url.clone(), credential, ecr).answers().await.map_err(|e| {
            RegistryError::UnsupportedUpstream(format!(
                "The upstream registry {} cannot be used: {e}",
                spec.upstream_url
            ))
        })?;
        let now = now_ms();
        let rule = PullThroughRule {
            account_id: account.to_string(),
            prefix: prefix.clone(),
            upstream_url: spec.upstream_url.clone(),
            upstream_registry: spec.upstream_registry.clone(),
            upstream_prefix: spec.upstream_prefix.as_deref().map(|p| rules::normalize_prefix(p).to_string()),
            credential_arn: spec.credential_arn.clone(),
            refresh_seconds: None,
            created_at: now,
            updated_at: now,
        };
        let created = self.meta().create_pull_through_rule(&rule, MAX_RULES).await?;
        self.cache.rules_changed(account);
        match created {
            CappedInsert::Inserted => {
                tracing::info!(account, prefix = %rule.prefix, upstream = %url.base(), "pull-through cache rule created");
                Ok(rule)
            }
            CappedInsert::Taken => Err(RegistryError::PullThroughRuleAlreadyExists { prefix }),
            CappedInsert::LimitReached => Err(RegistryError::PullThroughRuleLimit),
        }
    }

    /// `UpdatePullThroughCacheRule`: only the credential (and the role, which Berth refuses)
    /// may change; the new secret must be one the registry can read.
    pub async fn update_pull_through_rule(
        &self,
        account: &str,
        region: &str,
        prefix: &str,
        credential_arn: Option<&str>,
        custom_role_arn: Option<&str>,
    ) -> Result<PullThroughRule, RegistryError> {
        let mut rule = self.pull_through_rule(account, prefix).await?;
        if custom_role_arn.is_some() {
            return Err(RegistryError::InvalidParameter(NO_ROLES.into()));
        }
        let Some(arn) = credential_arn else {
            return Err(RegistryError::InvalidParameter(
                "Invalid parameter: give the credentialArn the rule is to use".into(),
            ));
        };
        self.rule_credential(account, region, arn).await?;
        rule.credential_arn = Some(arn.to_string());
        rule.updated_at = now_ms().max(rule.updated_at);
        self.store_rule_change(account, rule).await
    }

    /// Berth's extension: how long the rule's cached tags are served before they are checked
    /// upstream again (`None`: ECR's 24 hours).
    pub async fn set_pull_through_refresh(
        &self,
        account: &str,
        prefix: &str,
        seconds: Option<i64>,
    ) -> Result<PullThroughRule, RegistryError> {
        if let Some(s) = seconds
            && !(1..=MAX_REFRESH_SECONDS).contains(&s)
        {
            return Err(RegistryError::InvalidParameter(format!(
                "Invalid parameter at 'refreshIntervalSeconds': {s} is not between 1 and {MAX_REFRESH_SECONDS}"
            )));
        }
        let mut rule = self.pull_through_rule(account, prefix).await?;
        rule.refresh_seconds = seconds;
        rule.updated_at = now_ms().max(rule.updated_at);
        self.store_rule_change(account, rule).await
    }

    /// Stores what changed of a rule, and forgets this node's copy of the account's rules.
    async fn store_rule_change(&self, account: &str, rule: PullThroughRule) -> Result<PullThroughRule, RegistryError> {
        self.meta().update_pull_through_rule(&rule).await.map_err(|e| match e {
            MetaError::NotFound => not_found(&rule.prefix),
            other => other.into(),
        })?;
        self.cache.rules_changed(account);
        Ok(rule)
    }

    pub async fn delete_pull_through_rule(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<PullThroughRule, RegistryError> {
        check_prefix("ecrRepositoryPrefix", prefix)?;
        let prefix = rules::normalize_prefix(prefix);
        let deleted = self.meta().delete_pull_through_rule(account, prefix).await.map_err(|e| match e {
            MetaError::NotFound => not_found(prefix),
            other => other.into(),
        });
        self.cache.rules_changed(account);
        deleted
    }

    /// `ValidatePullThroughCacheRule`: reads the rule's secret and authenticates with the
    /// upstream for real. What fails is the answer's `failure`, not an error.
    pub async fn validate_pull_through_rule(
        &self,
        account: &str,
        region: &str,
        prefix: &str,
    ) -> Result<RuleValidation, RegistryError> {
        let rule = self.pull_through_rule(account, prefix).await?;
        let failure = self.check_rule(account, region, &rule).await.err();
        Ok(RuleValidation { rule, failure })
    }

    async fn check_rule(&self, account: &str, region: &str, rule: &PullThroughRule) -> Result<(), String> {
        let url = self.upstream_url(&rule.upstream_url).map_err(|e| e.to_string())?;
        let credential = match &rule.credential_arn {
            Some(arn) => Some(self.rule_credential(account, region, arn).await.map_err(|e| e.to_string())?),
            None => None,
        };
        let ecr = rule.upstream_registry.as_deref() == Some("ecr");
        upstream::Upstream::new(&self.upstream, url, credential, ecr).check_access().await.map_err(|e| e.to_string())
    }

    fn upstream_url(&self, url: &str) -> Result<UpstreamUrl, RegistryError> {
        UpstreamUrl::parse(url, self.upstream.allow_plain_http).map_err(|e| match e {
            UpstreamUrlError::PlainHttp(_) => {
                RegistryError::UnsupportedUpstream(format!("{e}; set pull_through.allow_plain_http to allow it"))
            }
            UpstreamUrlError::Invalid(..) => {
                RegistryError::InvalidParameter(format!("Invalid parameter at 'upstreamRegistryUrl': {e}"))
            }
        })
    }

    /// The credential a rule's secret holds, read as the service.
    async fn rule_credential(
        &self,
        account: &str,
        region: &str,
        arn: &str,
    ) -> Result<UpstreamCredential, RegistryError> {
        match check_credential_arn(arn, region, account) {
            Ok(()) => {}
            Err(CredentialRefusal::NotACacheSecret) => {
                return Err(RegistryError::SecretInaccessible(format!(
                    "The secret {arn} is not one a pull-through cache rule may use: its name must begin with {}",
                    rules::CREDENTIAL_SECRET_PREFIX
                )));
            }
            Err(CredentialRefusal::Elsewhere) => {
                return Err(RegistryError::SecretInaccessible(format!(
                    "The secret {arn} belongs to another account or region than the registry {account} in {region}"
                )));
            }
        }
        let value = match self.secrets_manager(account, region).get_value(arn, None, None).await {
            Ok((_, _, value)) => value,
            Err(SecretsManagerError::ResourceNotFound(_)) => {
                return Err(RegistryError::SecretNotFound(format!("The secret {arn} does not exist")));
            }
            Err(SecretsManagerError::InvalidRequest(_)) => {
                return Err(RegistryError::SecretInaccessible(format!(
                    "The secret {arn} is scheduled for deletion and cannot be used"
                )));
            }
            Err(SecretsManagerError::DecryptionFailure(why)) => {
                return Err(RegistryError::SecretUndecryptable(format!("The secret {arn} cannot be decrypted: {why}")));
            }
            Err(other) => return Err(RegistryError::Internal(format!("reading the secret {arn}: {other}"))),
        };
        parse_credential(&value).ok_or_else(|| {
            RegistryError::SecretUndecryptable(format!(
                "The secret {arn} does not hold a credential: its value must be JSON {{\"username\": …, \"accessToken\": …}}"
            ))
        })
    }
}

/// `{"username": …, "accessToken": …}` (and optionally `"region"`, for another Berth whose
/// signatures are scoped elsewhere than us-east-1).
fn parse_credential(value: &SecretValue) -> Option<UpstreamCredential> {
    let SecretValue::String(text) = value else { return None };
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let username = v["username"].as_str().filter(|s| !s.is_empty())?.to_string();
    let secret = v["accessToken"].as_str().filter(|s| !s.is_empty())?.to_string();
    let region = v["region"].as_str().map(str::to_string);
    Some(UpstreamCredential { username, secret, region })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_username_and_access_token() {
        let ok = SecretValue::String(r#"{"username":"u","accessToken":"t"}"#.into());
        assert_eq!(
            parse_credential(&ok),
            Some(UpstreamCredential { username: "u".into(), secret: "t".into(), region: None })
        );
        let with_region = SecretValue::String(r#"{"username":"u","accessToken":"t","region":"eu-west-1"}"#.into());
        assert_eq!(parse_credential(&with_region).unwrap().region.as_deref(), Some("eu-west-1"));
        for bad in [r#"{"username":"u"}"#, r#"{"username":"","accessToken":"t"}"#, "u:t", "[]"] {
            assert_eq!(parse_credential(&SecretValue::String(bad.into())), None, "{bad}");
        }
        assert_eq!(parse_credential(&SecretValue::Binary(b"{}".to_vec())), None);
    }
}
