//! The destination's side of the replication route: what a peer deployment may do here, on
//! behalf of one of the accounts it holds, in one repository of an account this deployment
//! serves. Every call is authorized as the source account's root (`destination.rs`): a
//! repository policy or registry policy change takes effect on the next call.

use berth_meta::{ReplicationPeer, Repository};
use berth_oci::manifest::parse_manifest;
use berth_oci::{ContentRange, Digest};
use berth_store::ByteStream;

use super::{Failure, failure};
use crate::repositories::repository_key;
use crate::{Registry, RegistryError};

/// Whose replica, for which repository of which registry here.
#[derive(Debug, Clone)]
pub struct ReplicaAddress {
    pub source_account: String,
    pub registry_id: String,
    pub repository: String,
}

/// A refused call: the failure code the source records, whether it tries again, and why.
#[derive(Debug, Clone)]
pub struct ReplicaRefused {
    pub failure: Failure,
    pub message: String,
}

impl From<Failure> for ReplicaRefused {
    fn from(failure: Failure) -> Self {
        ReplicaRefused { failure, message: String::new() }
    }
}

impl From<RegistryError> for ReplicaRefused {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        ReplicaRefused { failure: e.into(), message }
    }
}

impl From<berth_meta::MetaError> for ReplicaRefused {
    fn from(e: berth_meta::MetaError) -> Self {
        RegistryError::from(e).into()
    }
}

type Result<T> = std::result::Result<T, ReplicaRefused>;

impl Registry {
    /// The destination repository's key, once the peer is known to hold the source account
    /// and this deployment serves the destination registry.
    async fn replica_key(&self, peer: &ReplicationPeer, at: &ReplicaAddress) -> Result<String> {
        if !peer.accounts.contains(&at.source_account) {
            return Err(ReplicaRefused {
                failure: Failure::Final(failure::NOT_AUTHORIZED),
                message: format!(
                    "the peer of {} does not hold account {} (its peer token names the accounts it holds)",
                    peer.region, at.source_account
                ),
            });
        }
        if !self.serves_account(&at.registry_id).await? {
            return Err(ReplicaRefused {
                failure: Failure::Final(failure::DESTINATION_REGISTRY_NOT_FOUND),
                message: format!("registry {} is not served in {}", at.registry_id, self.region()),
            });
        }
        berth_oci::validate_repository_name(&at.repository)
            .map_err(|m| ReplicaRefused { failure: Failure::Final(failure::INTERNAL_ERROR), message: m })?;
        Ok(repository_key(self.registry_id(), &at.registry_id, &at.repository))
    }

    /// The destination repository, authorized for this replica (created if missing, as
    /// `replica_repository` decides).
    async fn replica_target(&self, peer: &ReplicationPeer, at: &ReplicaAddress) -> Result<Repository> {
        let key = self.replica_key(peer, at).await?;
        Ok(self.replica_repository(&at.source_account, &key).await?)
    }

    /// Makes the destination repository ready for the replica.
    pub async fn receive_repository(&self, peer: &ReplicationPeer, at: &ReplicaAddress) -> Result<()> {
        self.replica_target(peer, at).await.map(|_| ())
    }

    /// Whether the destination repository holds the blob already.
    pub async fn receive_blob_present(
        &self,
        peer: &ReplicationPeer,
        at: &ReplicaAddress,
        digest: &Digest,
    ) -> Result<bool> {
        let repository = self.replica_target(peer, at).await?;
        Ok(self.meta().linked_blob(&repository.name, digest).await?.is_some())
    }

    /// Starts an upload of a blob into the destination repository.
    pub async fn receive_upload_start(&self, peer: &ReplicationPeer, at: &ReplicaAddress) -> Result<String> {
        let repository = self.replica_target(peer, at).await?;
        Ok(self.start_upload(&repository.name, None).await?)
    }

    /// The bytes an upload holds, acknowledged.
    pub async fn receive_upload_offset(&self, peer: &ReplicationPeer, at: &ReplicaAddress, id: &str) -> Result<u64> {
        let repository = self.replica_target(peer, at).await?;
        Ok(self.upload_status(&repository.name, id).await?)
    }

    /// Appends `length` bytes at `offset` (where the upload must stand); returns where it
    /// stands then.
    pub async fn receive_upload_part(
        &self,
        peer: &ReplicationPeer,
        at: &ReplicaAddress,
        id: &str,
        offset: u64,
        length: u64,
        body: ByteStream,
    ) -> Result<u64> {
        let repository = self.replica_target(peer, at).await?;
        if length == 0 {
            return Ok(self.upload_status(&repository.name, id).await?);
        }
        let range = ContentRange { start: offset, end: offset + length - 1 };
        Ok(self.append_upload(&repository.name, id, Some(range), Some(length), body).await?)
    }

    /// Commits an upload as the blob `digest`, verified over every byte received.
    pub async fn receive_upload_commit(
        &self,
        peer: &ReplicationPeer,
        at: &ReplicaAddress,
        id: &str,
        digest: &Digest,
    ) -> Result<()> {
        let repository = self.replica_target(peer, at).await?;
        self.complete_upload(&repository.name, id, digest.as_str(), None, None).await?;
        Ok(())
    }

    /// Stores an arriving manifest, verified against `digest`, with the `tags` it was pushed
    /// with (an immutable tag held by another image here is left out: returned).
    pub async fn receive_manifest(
        &self,
        peer: &ReplicationPeer,
        at: &ReplicaAddress,
        digest: &Digest,
        media_type: Option<&str>,
        content: Vec<u8>,
        tags: &[String],
    ) -> Result<Vec<String>> {
        let repository = self.replica_target(peer, at).await?;
        let actual = Digest::from_bytes(digest.algorithm(), &content);
        if actual != *digest {
            return Err(ReplicaRefused {
                failure: Failure::Retry(failure::DIGEST_MISMATCH),
                message: format!("the manifest received is {actual}, not {digest}"),
            });
        }
        for tag in tags {
            berth_oci::validate_tag(tag)
                .map_err(|m| ReplicaRefused { failure: Failure::Final(failure::INTERNAL_ERROR), message: m })?;
        }
        let parsed = parse_manifest(media_type, &content).map_err(|e| ReplicaRefused {
            failure: Failure::Final(failure::INTERNAL_ERROR),
            message: format!("the manifest {digest}: {e}"),
        })?;
        Ok(self.store_replica(&repository, digest, parsed, content, tags).await?)
    }

    /// Removes the replica (`tags` none) or `tags` of it, as the source removed them; never
    /// creates the repository.
    pub async fn receive_removal(
        &self,
        peer: &ReplicationPeer,
        at: &ReplicaAddress,
        digest: &Digest,
        tags: Option<&[String]>,
    ) -> Result<()> {
        let key = self.replica_key(peer, at).await?;
        Ok(self.remove_replica(&at.source_account, &key, digest, tags).await?)
    }
}
