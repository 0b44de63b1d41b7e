//! What an account and its repositories are configured with, beside the repositories' own
//! settings: account settings, resource policies (one per repository, one per registry) and
//! lifecycle policies with their previews. Every text is validated here before it is stored.

use berth_iam::{PolicyDocument, PolicyKind};
use berth_rules::lifecycle::{self, ActionKind, LifecyclePolicy};
use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError};

type Result<T> = std::result::Result<T, RegistryError>;

/// The account settings ECR knows: name, allowed values, default.
const ACCOUNT_SETTINGS: &[(&str, &[&str], &str)] = &[
    ("BLOB_MOUNTING", &["ENABLED", "DISABLED"], "DISABLED"),
    ("REGISTRY_POLICY_SCOPE", &["V1", "V2"], "V2"),
    ("BASIC_SCAN_TYPE_VERSION", &["AWS_NATIVE", "CLAIR"], "AWS_NATIVE"),
];

/// Repository and registry policies are at most 10,240 characters, as in ECR.
const MAX_POLICY: usize = 10_240;

fn account_setting_spec(name: &str) -> Result<&'static (&'static str, &'static [&'static str], &'static str)> {
    ACCOUNT_SETTINGS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
        RegistryError::InvalidSetting(format!(
            "Invalid account setting name {name:?}: use BLOB_MOUNTING, REGISTRY_POLICY_SCOPE or BASIC_SCAN_TYPE_VERSION"
        ))
    })
}

/// A resource policy's text, parsed and validated (`what` names it in the refusal).
pub fn parse_resource_policy(text: &str, what: &str) -> Result<PolicyDocument> {
    if text.is_empty() || text.len() > MAX_POLICY {
        return Err(RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Member must have length between 1 and {MAX_POLICY}'"
        )));
    }
    PolicyDocument::parse(text, PolicyKind::Resource).map_err(|e| {
        RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {what} provided': {e}"
        ))
    })
}

/// A lifecycle policy's text, parsed and validated.
pub fn parse_lifecycle_policy(text: &str) -> Result<LifecyclePolicy> {
    lifecycle::parse(text).map_err(|e| {
        RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {e}'"
        ))
    })
}

/// One image a lifecycle preview would act on, stored as this JSON (ECR's `previewResults`
/// shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewResult {
    pub image_digest: String,
    pub image_tags: Vec<String>,
    /// Seconds since the epoch.
    pub image_pushed_at: f64,
    pub action: PreviewAction,
    pub applied_rule_priority: i64,
    /// `STANDARD` or `ARCHIVE`: where the image is now.
    pub storage_class: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewAction {
    #[serde(rename = "type")]
    pub kind: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_storage_class: Option<String>,
}

/// A stored lifecycle preview: the policy text it evaluated, its status, what it found.
#[derive(Debug, Clone)]
pub struct LifecyclePreview {
    pub policy_text: String,
    pub status: String,
    pub results: Vec<PreviewResult>,
}

impl Registry {
    // ---- account settings ----

    /// An account setting's value, its default when none was put.
    pub async fn account_setting(&self, account: &str, name: &str) -> Result<(&'static str, String)> {
        let (name, _, default) = account_setting_spec(name)?;
        let value = self.meta().account_setting(account, name).await?;
        Ok((name, value.unwrap_or_else(|| default.to_string())))
    }

    pub async fn put_account_setting(&self, account: &str, name: &str, value: &str) -> Result<&'static str> {
        let (name, values, _) = account_setting_spec(name)?;
        if !values.contains(&value) {
            return Err(RegistryError::InvalidSetting(format!(
                "Invalid value {value:?} for {name}: use one of {}",
                values.join(", ")
            )));
        }
        self.meta().put_account_setting(account, name, value).await?;
        Ok(name)
    }

    // ---- resource policies ----

    /// Stores a repository policy (already parsed by `parse_resource_policy`, and checked
    /// against lockout by the caller's authorizer when not forced).
    pub async fn set_repository_policy(&self, repository: &str, text: &str) -> Result<()> {
        parse_resource_policy(text, "repository policy")?;
        self.meta()
            .set_repository_policy(repository, Some(text))
            .await
            .map_err(RegistryError::in_repository(repository))?;
        Ok(())
    }

    pub async fn repository_policy(&self, repository: &str) -> Result<String> {
        self.meta()
            .repository_policy(repository)
            .await
            .map_err(RegistryError::in_repository(repository))?
            .ok_or_else(|| RegistryError::RepositoryPolicyNotFound { name: repository.to_string() })
    }

    /// Removes a repository policy; returns its text.
    pub async fn delete_repository_policy(&self, repository: &str) -> Result<String> {
        self.meta()
            .set_repository_policy(repository, None)
            .await
            .map_err(RegistryError::in_repository(repository))?
            .ok_or_else(|| RegistryError::RepositoryPolicyNotFound { name: repository.to_string() })
    }

    pub async fn put_registry_policy(&self, account: &str, text: &str) -> Result<()> {
        parse_resource_policy(text, "registry policy")?;
        self.meta().set_registry_policy(account, Some(text)).await?;
        Ok(())
    }

    pub async fn registry_policy(&self, account: &str) -> Result<String> {
        self.meta().registry_policy(account).await?.ok_or(RegistryError::RegistryPolicyNotFound)
    }

    pub async fn delete_registry_policy(&self, account: &str) -> Result<String> {
        self.meta().set_registry_policy(account, None).await?.ok_or(RegistryError::RegistryPolicyNotFound)
    }

    // ---- lifecycle policies ----

    pub async fn put_lifecycle_policy(&self, repository: &str, text: &str) -> Result<()> {
        parse_lifecycle_policy(text)?;
        self.meta()
            .set_lifecycle_policy(repository, Some(text))
            .await
            .map_err(RegistryError::in_repository(repository))?;
        Ok(())
    }

    /// A repository's lifecycle policy text and when it was last applied (epoch ms).
    pub async fn lifecycle_policy(&self, repository: &str) -> Result<(String, Option<i64>)> {
        self.meta()
            .lifecycle_policy(repository)
            .await
            .map_err(RegistryError::in_repository(repository))?
            .ok_or_else(|| RegistryError::LifecyclePolicyNotFound { name: repository.to_string() })
    }

    pub async fn delete_lifecycle_policy(&self, repository: &str) -> Result<(String, Option<i64>)> {
        self.meta()
            .set_lifecycle_policy(repository, None)
            .await
            .map_err(RegistryError::in_repository(repository))?
            .ok_or_else(|| RegistryError::LifecyclePolicyNotFound { name: repository.to_string() })
    }

    /// Evaluates `text` (or the stored policy) against the repository's images now and stores
    /// the result as the repository's preview, complete at once (a preview only reads). Returns
    /// the policy text evaluated.
    pub async fn start_lifecycle_preview(&self, repository: &str, text: Option<String>) -> Result<String> {
        let text = match text {
            Some(t) => t,
            None => self.lifecycle_policy(repository).await?.0,
        };
        let policy = parse_lifecycle_policy(&text)?;
        let results: Vec<PreviewResult> = self
            .lifecycle_preview(repository, &policy, berth_meta::now_ms())
            .await?
            .into_iter()
            .map(|(d, image)| PreviewResult {
                image_digest: image.digest,
                image_tags: image.tags,
                image_pushed_at: image.pushed_at as f64 / 1000.0,
                action: PreviewAction {
                    kind: d.action,
                    target_storage_class: (d.action == ActionKind::Transition).then(|| "ARCHIVE".to_string()),
                },
                applied_rule_priority: d.rule_priority,
                storage_class: if image.archived { "ARCHIVE" } else { "STANDARD" }.to_string(),
            })
            .collect();
        let json = serde_json::to_string(&results).expect("preview results serialize");
        self.meta()
            .put_lifecycle_preview(repository, &text, "COMPLETE", &json)
            .await
            .map_err(RegistryError::in_repository(repository))?;
        Ok(text)
    }

    /// The repository's last lifecycle preview.
    pub async fn lifecycle_preview_results(&self, repository: &str) -> Result<LifecyclePreview> {
        let not_found = || RegistryError::LifecyclePreviewNotFound { name: repository.to_string() };
        let (policy_text, status, results) = self
            .meta()
            .lifecycle_preview(repository)
            .await
            .map_err(RegistryError::in_repository(repository))?
            .ok_or_else(not_found)?;
        let results = serde_json::from_str(&results)
            .map_err(|e| RegistryError::Internal(format!("stored lifecycle preview of {repository}: {e}")))?;
        Ok(LifecyclePreview { policy_text, status, results })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_results_keep_their_stored_shape() {
        let stored = r#"[{"imageDigest":"sha256:ab","imageTags":["v1"],"imagePushedAt":1.5,"action":{"type":"TRANSITION","targetStorageClass":"ARCHIVE"},"appliedRulePriority":2,"storageClass":"STANDARD"},{"imageDigest":"sha256:cd","imageTags":[],"imagePushedAt":2.0,"action":{"type":"EXPIRE"},"appliedRulePriority":1,"storageClass":"ARCHIVE"}]"#;
        let parsed: Vec<PreviewResult> = serde_json::from_str(stored).unwrap();
        assert_eq!(parsed[0].action.target_storage_class.as_deref(), Some("ARCHIVE"));
        assert_eq!(parsed[1].action.kind, ActionKind::Expire);
        let again: serde_json::Value = serde_json::to_value(&parsed).unwrap();
        assert_eq!(again, serde_json::from_str::<serde_json::Value>(stored).unwrap());
    }

    #[tokio::test]
    async fn account_settings_have_defaults_and_known_values() {
        let (_dir, registry) = crate::test_registry().await;
        let account = "111111111111";
        assert_eq!(
            registry.account_setting(account, "BLOB_MOUNTING").await.unwrap(),
            ("BLOB_MOUNTING", "DISABLED".into())
        );
        registry.put_account_setting(account, "BLOB_MOUNTING", "ENABLED").await.unwrap();
        assert_eq!(registry.account_setting(account, "BLOB_MOUNTING").await.unwrap().1, "ENABLED");
        assert!(matches!(
            registry.put_account_setting(account, "BLOB_MOUNTING", "ON").await,
            Err(RegistryError::InvalidSetting(_))
        ));
        assert!(matches!(registry.account_setting(account, "NOPE").await, Err(RegistryError::InvalidSetting(_))));
    }

    #[tokio::test]
    async fn policies_are_found_or_named_missing() {
        let (_dir, registry) = crate::test_registry().await;
        let settings = berth_meta::RepositorySettings::default();
        registry.create_repository("app", &settings, &[], None).await.unwrap();
        assert!(
            matches!(registry.repository_policy("app").await, Err(RegistryError::RepositoryPolicyNotFound { name }) if name == "app")
        );
        assert!(
            matches!(registry.repository_policy("gone").await, Err(RegistryError::RepositoryNotFound { name }) if name == "gone")
        );
        let text =
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}]}"#;
        registry.set_repository_policy("app", text).await.unwrap();
        assert_eq!(registry.delete_repository_policy("app").await.unwrap(), text);
        assert!(matches!(registry.registry_policy("111111111111").await, Err(RegistryError::RegistryPolicyNotFound)));
        assert!(matches!(registry.lifecycle_policy("app").await, Err(RegistryError::LifecyclePolicyNotFound { .. })));
        assert!(matches!(
            registry.lifecycle_preview_results("app").await,
            Err(RegistryError::LifecyclePreviewNotFound { .. })
        ));
        let lifecycle = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
        registry.put_lifecycle_policy("app", lifecycle).await.unwrap();
        assert_eq!(registry.start_lifecycle_preview("app", None).await.unwrap(), lifecycle);
        let preview = registry.lifecycle_preview_results("app").await.unwrap();
        assert_eq!((preview.status.as_str(), preview.results.len()), ("COMPLETE", 0));
    }

    #[test]
    fn policies_are_bounded_and_parsed() {
        assert!(matches!(parse_resource_policy("", "repository policy"), Err(RegistryError::InvalidParameter(_))));
        assert!(
            matches!(parse_resource_policy("{", "registry policy"), Err(RegistryError::InvalidParameter(m)) if m.contains("registry policy"))
        );
        assert!(matches!(parse_lifecycle_policy("{}"), Err(RegistryError::InvalidParameter(_))));
    }
}
