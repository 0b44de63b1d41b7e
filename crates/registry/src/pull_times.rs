//! `lastRecordedPullTime`: which pulls are recorded, and the account's pull-time update
//! exclusions — principals whose pulls are not (so that a scanner's pulls do not keep images
//! alive for lifecycle rules on "not pulled for N days").
//!
//! Only client pulls are recorded at all: Berth's own readers (the scanner, replication, the
//! pull-through cache's fills) read manifests without calling `record_pull`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_meta::{CappedInsert, now_ms};
use berth_oci::Digest;

use crate::repositories::split_repository_key;
use crate::{Registry, RegistryError};

/// ECR's quota of exclusions per registry.
pub const MAX_EXCLUSIONS: usize = 100;

/// How often one image's pull is written.
const EVERY_MS: i64 = 60_000;

/// How long a node trusts the exclusions it read (another node's change shows within this).
const EXCLUSIONS_FRESH_MS: i64 = 30_000;

/// An account's exclusions as read, with when.
type ReadExclusions = (i64, Arc<Vec<String>>);

/// This node's memory of pulls: when each (repository, digest) pull was last written, and each
/// account's exclusions with when they were read.
#[derive(Default, Clone)]
pub(crate) struct PullRecords {
    written: Arc<Mutex<HashMap<(String, String), i64>>>,
    exclusions: Arc<Mutex<HashMap<String, ReadExclusions>>>,
}

impl PullRecords {
    /// Whether the image's pull is due to be written (and marks it written).
    fn due(&self, name: &str, digest: &str, now: i64) -> bool {
        let mut written = self.written.lock().expect("pull records");
        let key = (name.to_string(), digest.to_string());
        if written.get(&key).is_some_and(|t| now - t < EVERY_MS) {
            return false;
        }
        if written.len() > 100_000 {
            written.clear();
        }
        written.insert(key, now);
        true
    }

    fn cached_exclusions(&self, account: &str, now: i64) -> Option<Arc<Vec<String>>> {
        let cached = self.exclusions.lock().expect("exclusions");
        cached.get(account).filter(|(at, _)| now - at < EXCLUSIONS_FRESH_MS).map(|(_, list)| list.clone())
    }

    fn remember_exclusions(&self, account: &str, now: i64, list: Vec<String>) -> Arc<Vec<String>> {
        let list = Arc::new(list);
        self.exclusions.lock().expect("exclusions").insert(account.to_string(), (now, list.clone()));
        list
    }

    fn forget_exclusions(&self, account: &str) {
        self.exclusions.lock().expect("exclusions").remove(account);
    }
}

impl Registry {
    /// `RegisterPullTimeUpdateExclusion`: returns when it was registered.
    pub async fn register_pull_time_exclusion(&self, account: &str, principal_arn: &str) -> Result<i64, RegistryError> {
        check_principal_arn(principal_arn)?;
        let now = now_ms();
        let added = self.meta().add_pull_time_exclusion(account, principal_arn, now, MAX_EXCLUSIONS).await?;
        self.pull_records.forget_exclusions(account);
        match added {
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
        let removed = self.meta().remove_pull_time_exclusion(account, principal_arn).await?;
        self.pull_records.forget_exclusions(account);
        if removed { Ok(()) } else { Err(RegistryError::PullTimeExclusionNotFound { arn: principal_arn.to_string() }) }
    }

    /// `ListPullTimeUpdateExclusions`: (principal ARN, registered at) in ARN order.
    pub async fn pull_time_exclusions(&self, account: &str) -> Result<Vec<(String, i64)>, RegistryError> {
        Ok(self.meta().pull_time_exclusions(account).await?)
    }

    /// Records a client's pull for `lastRecordedPullTime`, unless the puller (its IAM ARN;
    /// `None` for an anonymous pull) is excluded in the repository's account: at most one
    /// write per image a minute, in the background so a pull never waits for the database.
    /// The account's exclusions are read at most every 30 s per node; an excluded pull never
    /// takes the minute's write from someone else's.
    pub fn record_pull(&self, name: &str, digest: &Digest, puller: Option<&str>) {
        let now = now_ms();
        let account = split_repository_key(self.registry_id(), name).0.to_string();
        let records = self.pull_records.clone();
        let known = records.cached_exclusions(&account, now);
        if let (Some(arn), Some(list)) = (puller, &known)
            && list.iter().any(|a| a == arn)
        {
            return;
        }
        if known.is_some() && !records.due(name, digest.as_str(), now) {
            return;
        }
        let (meta, name, digest) = (self.meta().clone(), name.to_string(), digest.to_string());
        let puller = puller.map(str::to_string);
        tokio::spawn(async move {
            if known.is_none() {
                let list = match meta.pull_time_exclusions(&account).await {
                    Ok(list) => list.into_iter().map(|(arn, _)| arn).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the pull-time update exclusions");
                        return;
                    }
                };
                let list = records.remember_exclusions(&account, now, list);
                if puller.as_ref().is_some_and(|p| list.contains(p)) || !records.due(&name, &digest, now) {
                    return;
                }
            }
            if let Err(e) = meta.record_pull(&name, &digest, now).await {
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
