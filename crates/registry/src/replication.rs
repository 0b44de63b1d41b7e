//! Registry replication: the configuration each account's registry keeps
//! (`PutReplicationConfiguration`, `DescribeRegistry`), checked against what this deployment
//! can reach. The replication queue and the transfer build on it (issue 17).

use berth_meta::ImageReplication;
use berth_oci::Digest;
use berth_rules::replication::{Destination, ReplicationConfiguration};

use crate::{Registry, RegistryError};

/// The account setting that holds a registry's replication configuration (JSON, ECR's shape).
const REPLICATION_SETTING: &str = "berth:replication-configuration";

impl Registry {
    /// The replication configuration of `account`'s registry (no rules until one is put).
    pub async fn replication_configuration(&self, account: &str) -> Result<ReplicationConfiguration, RegistryError> {
        match self.meta().account_setting(account, REPLICATION_SETTING).await? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| RegistryError::Internal(format!("stored replication configuration: {e}"))),
            None => Ok(ReplicationConfiguration::default()),
        }
    }

    /// Replaces the replication configuration of `account`'s registry, as
    /// `PutReplicationConfiguration` does. A destination in this deployment's region must be
    /// an account it serves (a copy there is made in-process); other regions are those of
    /// replication peers (none can be configured yet: issue 17).
    pub async fn put_replication_configuration(
        &self,
        account: &str,
        config: &ReplicationConfiguration,
    ) -> Result<(), RegistryError> {
        let region = self.region().to_string();
        let source = Destination { region: region.clone(), registry_id: account.to_string() };
        config.validate(&source, |r| r == region).map_err(RegistryError::InvalidParameter)?;
        for d in config.rules.iter().flat_map(|r| &r.destinations) {
            if d.region == region && !self.serves_account(&d.registry_id).await? {
                return Err(RegistryError::InvalidParameter(format!(
                    "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Registry \
                     '{}' is not served in region '{region}'",
                    d.registry_id
                )));
            }
        }
        let text = serde_json::to_string(config).map_err(|e| RegistryError::Internal(e.to_string()))?;
        self.meta().put_account_setting(account, REPLICATION_SETTING, &text).await?;
        Ok(())
    }

    /// Where the replications of an image of `repository` stand, one per destination.
    pub async fn image_replications(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<ImageReplication>, RegistryError> {
        Ok(self.meta().image_replications(repository, digest.as_str()).await?)
    }
}
