//! `lastRecordedPullTime`: which pulls are recorded, and the account's pull-time update
//! exclusions — principals whose pulls are not (so that a scanner's pulls do not keep images
//! alive for lifecycle rules on "not pulled for N days").
//!
//! Only client pulls are recorded at all: Berth's own readers (the scanner, replication, the
//! pull-through cache's fills) read manifests without calling `record_pull`.

use berth_meta::{CappedInsert, now_ms};
use berth_oci::Digest;

use crate::repositories::split_repository_key;
use crate::{Registry, RegistryError};

/// ECR's quota of exclusions per registry.
pub const MAX_EXCLUSIONS: usize = 100;

/// How often one puller's pulls of one image are looked at.
const EVERY_MS: i64 = 60_000;

/// (repository key, digest, puller's ARN or "" for an anonymous pull).
pub(crate) type PullKey = (String, String, String);

impl Registry {
    /// `RegisterPullTimeUpdateExclusion`: returns when it was registered.
    pub async fn register_pull_time_exclusion(&self, account: &str, principal_arn: &str) -> Result<i64, RegistryError> {
        check_principal_arn(principal_arn)?;
        let now = now_ms();
        match self.meta().add_pull_time_exclusion(account, principal_arn, now, MAX_EXCLUSIONS).await? {
            CappedInsert::Inserted => Ok(now),
            CappedInsert::Taken => Err(RegistryError::PullTimeExclusionExists { arn: principal_arn.to_string() }),
            CappedInsert::LimitReached => Err(RegistryError::PullTimeExclusionLimit),
        }
    }

    /// `DeregisterPullTimeUpdateExclusion`.
    pub async fn deregister_pull_time_exclusion(
        &self,
        account: &str,
        principal_arn: &str,
    ) -> Result<(), RegistryError> {
        check_principal_arn(principal_arn)?;
        if self.meta().remove_pull_time_exclusion(account, principal_arn).await? {
            Ok(())
        } else {
            Err(RegistryError::PullTimeExclusionNotFound { arn: principal_arn.to_string() })
        }
    }

    /// `ListPullTimeUpdateExclusions`: (principal ARN, registered at) in ARN order.
    pub async fn pull_time_exclusions(&self, account: &str) -> Result<Vec<(String, i64)>, RegistryError> {
        Ok(self.meta().pull_time_exclusions(account).await?)
    }

    /// Records a client's pull for `lastRecordedPullTime`, unless the puller (its IAM ARN;
    /// `None` for an anonymous pull) is excluded in the repository's account. At most one look
    /// per image and puller a minute, done in the background so a pull never waits for the
    /// database.
    pub fn record_pull(&self, name: &str, digest: &Digest, puller: Option<&str>) {
        let now = now_ms();
        let puller = puller.unwrap_or_default().to_string();
        {
            let mut recorded = self.pulls_recorded.lock().expect("pull records");
            let key = (name.to_string(), digest.to_string(), puller.clone());
            if recorded.get(&key).is_some_and(|t| now - t < EVERY_MS) {
                return;
            }
            if recorded.len() > 100_000 {
                recorded.clear();
            }
            recorded.insert(key, now);
        }
        let account = split_repository_key(self.registry_id(), name).0.to_string();
        let (meta, name, digest) = (self.meta().clone(), name.to_string(), digest.to_string());
        tokio::spawn(async move {
            let excluded = match puller.as_str() {
                "" => Ok(false),
                arn => meta.pull_time_exclusions(&account).await.map(|list| list.iter().any(|(a, _)| a == arn)),
            };
            let recorded = match excluded {
                Ok(true) => Ok(()),
                Ok(false) => meta.record_pull(&name, &digest, now).await,
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "could not record a pull");
            }
        });
    }
}

/// An IAM user or role ARN, as the model's `PrincipalArn` pattern has it (roles are kept and
/// match nothing until Berth has roles; users need not exist).
fn check_principal_arn(arn: &str) -> Result<(), RegistryError> {
    let invalid = || {
        RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'principalArn': {arn:?} is not an IAM user or role ARN \
             (arn:aws:iam::<account>:user/<name> or arn:aws:iam::<account>:role/<name>)"
        ))
    };
    let rest = arn.strip_prefix("arn:").ok_or_else(invalid)?;
    let (partition, rest) = rest.split_once(":iam::").ok_or_else(invalid)?;
    let partition_ok = partition == "aws"
        || partition
            .strip_prefix("aws-")
            .is_some_and(|p| p.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase())));
    let (account, resource) = rest.split_once(':').ok_or_else(invalid)?;
    let path = resource.strip_prefix("user/").or_else(|| resource.strip_prefix("role/")).ok_or_else(invalid)?;
    let name_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if !partition_ok
        || arn.len() > 200
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || !path.split('/').all(name_ok)
    {
        return Err(invalid());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_principal_arn;

    #[test]
    fn principal_arns_are_users_and_roles_of_an_account() {
        for ok in [
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::123456789012:role/scanner",
            "arn:aws:iam::123456789012:user/team/alice.b@x",
            "arn:aws-us-gov:iam::123456789012:role/ci",
        ] {
            assert!(check_principal_arn(ok).is_ok(), "{ok}");
        }
        for bad in [
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:group/devs",
            "arn:aws:iam::12345678901:user/alice",
            "arn:aws:ecr:us-east-1:123456789012:repository/x",
            "arn:aws:iam::123456789012:user/",
            "arn:aws:iam::123456789012:user/a//b",
            "arn:AWS:iam::123456789012:user/alice",
            "alice",
        ] {
            assert!(check_principal_arn(bad).is_err(), "{bad}");
        }
        assert!(check_principal_arn(&format!("arn:aws:iam::123456789012:user/{}", "a".repeat(180))).is_err());
    }
}
