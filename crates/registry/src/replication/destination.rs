//! What a destination does with a replica, whoever brings it (this deployment copying into
//! another of its accounts, or a peer's replication route): the source account's root must be
//! allowed `ecr:ReplicateImage` on the destination repository (always, within one account;
//! across accounts, by the destination's registry policy), and `ecr:CreateRepository` if the
//! repository is missing, which is then created with the settings of the destination's
//! `REPLICATION` creation template covering it (else ECR's defaults). An arriving manifest is
//! stored under the destination's rules, keeping an immutable tag where it is.

use berth_meta::Repository;
use berth_oci::Digest;
use berth_oci::manifest::ParsedManifest;

use super::{Failure, failure};
use crate::identity::Caller;
use crate::repositories::template_for;
use crate::{Registry, RegistryError};

impl Registry {
    /// Whether the root of `source_account` may `action` on the destination repository `key`.
    pub(super) async fn replication_allowed(
        &self,
        source_account: &str,
        action: &'static str,
        key: &str,
    ) -> Result<bool, Failure> {
        let replicator = Caller {
            account_id: source_account.to_string(),
            principal_id: source_account.to_string(),
            arn: format!("arn:aws:iam::{source_account}:root"),
            access_key_id: String::new(),
            kind: berth_meta::PrincipalKind::Root,
        };
        let env = crate::authz::RequestEnv::default();
        let decision = self
            .authorizer(self.region())
            .authorize(&replicator, action, crate::authz::Target::Repository(key), &env)
            .await?;
        Ok(decision.is_ok())
    }

    /// The destination repository `key` a replica from `source_account` arrives in, created
    /// if missing and allowed (see the module's comment).
    pub(super) async fn replica_repository(&self, source_account: &str, key: &str) -> Result<Repository, Failure> {
        if !self.replication_allowed(source_account, "ecr:ReplicateImage", key).await? {
            return Err(Failure::Final(failure::NOT_AUTHORIZED));
        }
        if let Some(r) = self.find_repository(key).await? {
            return Ok(r);
        }
        if !self.replication_allowed(source_account, "ecr:CreateRepository", key).await? {
            return Err(Failure::Final(failure::REPOSITORY_CREATE_DENIED));
        }
        let templates = self.templates().await?;
        let (settings, tags) = match template_for(&templates, key, "REPLICATION") {
            Some((_, spec)) => (spec.settings(), spec.resource_tags.clone()),
            None => (Default::default(), Vec::new()),
        };
        match self.create_repository(key, &settings, &tags, None).await {
            Ok(r) => Ok(r),
            Err(RegistryError::RepositoryAlreadyExists { .. }) => Ok(self.repository(key).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores an arriving manifest in `target` with the `tags` it was pushed with, its blobs
    /// (and an index's children) already there. An immutable tag the destination has on
    /// another image stays there: the image arrives without it. Returns the tags left out.
    /// No chaining: what arrives by replication is not replicated again.
    pub(super) async fn store_replica(
        &self,
        target: &Repository,
        digest: &Digest,
        parsed: ParsedManifest,
        content: Vec<u8>,
        tags: &[String],
    ) -> Result<Vec<String>, Failure> {
        let rule = crate::repositories::tag_mutability(&target.settings);
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        for tag in tags {
            let elsewhere = match self.meta().resolve_tag(&target.name, tag).await? {
                Some(d) => d != *digest,
                None => false,
            };
            if elsewhere && rule.is_immutable(tag) { dropped.push(tag.clone()) } else { kept.push(tag.clone()) }
        }
        let tagged = !kept.is_empty();
        let kept_tags: Vec<&str> = kept.iter().map(String::as_str).collect();
        // Signatures the destination holds already stay beside the source's.
        let store = self.store_manifest(target, digest.clone(), parsed, content, kept.clone(), Vec::new());
        let stored = self.store_keeping_signatures(&target.name, &kept_tags, store).await;
        match stored {
            Ok(put) => {
                // An image arriving with tags is signed as the destination's own rules say.
                if tagged {
                    self.sign_pushed(None, &target.name, &put).await;
                }
                Ok(dropped)
            }
            // An immutable tag given to another image meanwhile: tried again, and then dropped.
            Err(RegistryError::TagImmutable { .. }) => Err(Failure::Retry(failure::INTERNAL_ERROR)),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a replica, or `tags` of it, from the destination repository `key`, as the
    /// source removed them (`ecr:BatchDeleteImage` for the source account's root): a tag only
    /// while it still names the image, the image unless an index lists it there. Nothing there
    /// is nothing to do; a removal here is never propagated further.
    pub(super) async fn remove_replica(
        &self,
        source_account: &str,
        key: &str,
        digest: &Digest,
        tags: Option<&[String]>,
    ) -> Result<(), Failure> {
        if !self.replication_allowed(source_account, "ecr:BatchDeleteImage", key).await? {
            return Err(Failure::Final(failure::NOT_AUTHORIZED));
        }
        if self.find_repository(key).await?.is_none() {
            return Ok(());
        }
        match tags {
            None => match self.remove_image(key, digest).await? {
                Ok(_) => Ok(()),
                Err(_parents) => Err(Failure::Final(failure::IMAGE_REFERENCED_BY_INDEX)),
            },
            Some(tags) => {
                for tag in tags {
                    if self.meta().resolve_tag(key, tag).await?.as_ref() == Some(digest) {
                        self.meta().delete_tag(key, tag).await?;
                    }
                }
                Ok(())
            }
        }
    }
}
