//! Image signing, as ECR's managed signing does it with AWS Signer, with keys Berth holds
//! (profiles.rs): the account's signing configuration, signing within the push, and each
//! image's signing status per profile.
//!
//! A signature takes two forms (ARCHITECTURE.md, "Signatures"): a layer of the image's
//! `sha256-<hex>.sig` manifest in the tag scheme cosign and containers/image share (a
//! simple-signing payload, its ECDSA signature in the layer's annotation) — what skopeo and
//! podman verify with a `sigstoreSigned` policy — and an OCI referrer of the image holding the
//! same signature as a sigstore bundle (v0.3, message signature, the profile ARN as the
//! public-key hint). Signing never fails a push: what went wrong is the status's failure code.

mod profiles;
pub mod verify;

use std::collections::HashSet;
use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use base64::Engine;
use berth_meta::{ImageSigning, SigningProfile, now_ms};
use berth_oci::{Algorithm, Digest, media_types};
use berth_rules::signing::{
    SIGNATURE_ANNOTATION, SIGSTORE_BUNDLE, SIMPLE_SIGNING, SigningConfiguration, attachment_of, is_signature_tag,
    parse_simple_signing, signature_tag, simple_signing_payload,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::authz::Target;
use crate::kms::KmsCaller;
use crate::repositories::split_repository_key;
use crate::service::ManifestPut;
use crate::{Registry, RegistryError};

/// The annotation naming the profile on the bundle referrers Berth attaches.
const PROFILE_ANNOTATION: &str = "com.berth.signing-profile";

/// The account setting holding the signing configuration (empty once deleted).
const SIGNING_SETTING: &str = "berth:signing-configuration";

/// The failure codes of a `FAILED` signing status (Berth's; ECR documents none).
pub mod failure {
    /// The pusher may not `signer:SignPayload` with the profile.
    pub const SIGNING_NOT_AUTHORIZED: &str = "SIGNING_NOT_AUTHORIZED";
    /// The configuration names a profile the account does not hold (any more).
    pub const PROFILE_NOT_FOUND: &str = "PROFILE_NOT_FOUND";
    /// The profile was revoked.
    pub const PROFILE_REVOKED: &str = "PROFILE_REVOKED";
    /// The signature could not be made or stored (the reason says why).
    pub const SIGNING_ERROR: &str = "SIGNING_ERROR";
}

/// The host names signatures name images by, set once the listener is bound.
#[derive(Default)]
pub(crate) struct SigningHost(OnceLock<String>);

/// Who pushed: their signing is authorized as theirs (`signer:SignPayload`). `None` for what
/// Berth stores itself (a replica, a cache fill): the account's own configuration decides.
pub type Pusher<'a> = Option<&'a KmsCaller<'a>>;

/// Why one profile did not sign: (failure code, reason).
type Refusal = (&'static str, String);

impl Registry {
    /// The registry host signatures name images by (`--registry-host`, else the listen
    /// address): `<host>/<repository>:<tag>` is each signature's docker reference.
    pub fn set_registry_host(&self, host: &str) {
        let _ = self.signing_host.0.set(host.to_string());
    }

    /// The host an account's images are pulled from: `<account>.<host>` for an account other
    /// than the default one, as the ECR API's repository URIs have it.
    fn image_host(&self, account: &str) -> String {
        let host = self.signing_host.0.get().map(String::as_str).unwrap_or("localhost");
        if account == self.registry_id() { host.to_string() } else { format!("{account}.{host}") }
    }

    /// `GetSigningConfiguration`: `None` if the account has none.
    pub async fn signing_configuration(&self, account: &str) -> Result<Option<SigningConfiguration>, RegistryError> {
        match self.meta().account_setting(account, SIGNING_SETTING).await? {
            Some(text) if !text.is_empty() => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| RegistryError::Internal(format!("stored signing configuration: {e}"))),
            _ => Ok(None),
        }
    }

    /// `PutSigningConfiguration`: every profile must be one of the account's, not revoked.
    pub async fn put_signing_configuration(
        &self,
        account: &str,
        config: &SigningConfiguration,
    ) -> Result<(), RegistryError> {
        config.validate().map_err(RegistryError::InvalidParameter)?;
        for rule in &config.rules {
            let arn = &rule.signing_profile_arn;
            let profile = self.meta().signing_profile(arn).await?.filter(|p| p.account_id == account);
            match profile {
                None => {
                    return Err(RegistryError::InvalidParameter(format!(
                        "Invalid parameter at 'signingProfileArn': the signing profile {arn} does not exist in account {account}"
                    )));
                }
                Some(p) if p.revoked_at.is_some() => {
                    return Err(RegistryError::InvalidParameter(format!(
                        "Invalid parameter at 'signingProfileArn': the signing profile {arn} is revoked"
                    )));
                }
                Some(_) => {}
            }
        }
        let text = serde_json::to_string(config).expect("a configuration serializes");
        self.meta().put_account_setting(account, SIGNING_SETTING, &text).await?;
        Ok(())
    }

    /// `DeleteSigningConfiguration`: returns the configuration it deleted.
    pub async fn delete_signing_configuration(&self, account: &str) -> Result<SigningConfiguration, RegistryError> {
        let config = self.signing_configuration(account).await?.ok_or(RegistryError::SigningConfigurationNotFound)?;
        self.meta().put_account_setting(account, SIGNING_SETTING, "").await?;
        Ok(config)
    }

    /// `DescribeImageSigningStatus`: one status per profile the image was signed with (or
    /// failed to be), in profile ARN order.
    pub async fn image_signing_statuses(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<Vec<ImageSigning>, RegistryError> {
        Ok(self.meta().image_signings(name, digest.as_str()).await?)
    }

    /// A client's manifest PUT (`/v2/`, `PutImage`): stored as `put_manifest` stores it, then
    /// the signatures a `.sig` tag held before are kept (added to what the client sent, never
    /// replaced by it), then signed as the account's signing configuration says.
    pub async fn push_manifest(
        &self,
        pusher: Pusher<'_>,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        extra_tags: &[String],
    ) -> Result<ManifestPut, RegistryError> {
        let put = self.put_manifest_keeping_signatures(name, reference, content_type, body, extra_tags).await?;
        self.sign_pushed(pusher, name, &put).await;
        Ok(put)
    }

    /// `put_manifest`, keeping the signatures a signature tag among the tags held before
    /// (under the tag's lock): a client's `.sig` PUT, or a cache fill of an upstream `.sig`.
    pub(crate) async fn put_manifest_keeping_signatures(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        extra_tags: &[String],
    ) -> Result<ManifestPut, RegistryError> {
        let tags: Vec<&str> = std::iter::once(reference).chain(extra_tags.iter().map(String::as_str)).collect();
        self.store_keeping_signatures(name, &tags, self.put_manifest(name, reference, content_type, body, extra_tags))
            .await
    }

    /// Runs `store` (which stores a manifest under `tags`) keeping the signatures the signature
    /// tags among `tags` held before: under those tags' locks, what they point at is read
    /// first and added back to what `store` put there. A client's `.sig` PUT, a cache fill of
    /// an upstream `.sig` and a replica's arrival all store through this.
    pub(crate) async fn store_keeping_signatures(
        &self,
        name: &str,
        tags: &[&str],
        store: impl std::future::Future<Output = Result<ManifestPut, RegistryError>>,
    ) -> Result<ManifestPut, RegistryError> {
        if !tags.iter().any(|t| is_signature_tag(t)) {
            return store.await;
        }
        let locks = self.signature_locks(name, tags).await?;
        let stored = async {
            let signature_tags = self.signature_tags_now(name, tags).await?;
            let put = store.await?;
            self.keep_signatures(name, &put.digest, signature_tags).await?;
            Ok(put)
        }
        .await;
        for lock in locks {
            lock.release().await;
        }
        stored
    }

    /// The locks of every signature tag among `tags`, taken in order (so two writers of the
    /// same tags never wait on each other crosswise).
    pub(crate) async fn signature_locks(&self, name: &str, tags: &[&str]) -> Result<Vec<SignatureLock>, RegistryError> {
        let mut wanted: Vec<&str> = tags.iter().copied().filter(|t| is_signature_tag(t)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut held = Vec::new();
        for tag in wanted {
            match self.signature_lock(name, tag).await {
                Ok(l) => held.push(l),
                Err(e) => {
                    for l in held {
                        l.release().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// The signature tags among `tags`, with what each points at now.
    pub(crate) async fn signature_tags_now(
        &self,
        name: &str,
        tags: &[&str],
    ) -> Result<Vec<(String, Option<Digest>)>, RegistryError> {
        let mut out: Vec<(String, Option<Digest>)> = Vec::new();
        for tag in tags.iter().filter(|t| is_signature_tag(t)) {
            if !out.iter().any(|(t, _)| t == tag) {
                out.push((tag.to_string(), self.meta().resolve_tag(name, tag).await?));
            }
        }
        Ok(out)
    }

    /// Serializes the writers of one signature tag — Berth's signing, clients' `.sig` PUTs,
    /// replicas — across nodes (a lease in the metadata store) and on this node (a lock), so
    /// that each reads what the one before it wrote and no signature is lost between a read
    /// and a tag move.
    pub(crate) async fn signature_lock(&self, name: &str, tag: &str) -> Result<SignatureLock, RegistryError> {
        const TTL: std::time::Duration = std::time::Duration::from_secs(30);
        let key = format!("signatures:{name}:{tag}");
        let local = self.node_lock(&key).lock_owned().await;
        let holder = uuid::Uuid::new_v4().to_string();
        let deadline = std::time::Instant::now() + TTL;
        while !self.try_lease(&key, &holder, TTL).await? {
            if std::time::Instant::now() > deadline {
                return Err(RegistryError::Internal(format!(
                    "the signatures of {tag} in {name} stay locked; try again"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        Ok(SignatureLock { key, holder, meta: self.meta().clone(), released: false, _local: local })
    }

    /// After `digest` was stored under signature tags that pointed at other manifests before
    /// (`previous`): those manifests' signatures are added back, and they are removed. The
    /// caller holds the tags' `signature_lock` since it read `previous`.
    pub(crate) async fn keep_signatures(
        &self,
        name: &str,
        digest: &Digest,
        previous: Vec<(String, Option<Digest>)>,
    ) -> Result<(), RegistryError> {
        for (tag, before) in previous {
            let Some(before) = before.filter(|b| b != digest) else { continue };
            let Some((subject, _)) = attachment_of(&tag) else { continue };
            let Ok(subject) = Digest::parse(&subject) else { continue };
            let Some(stored) = self.meta().manifest(name, &before).await? else { continue };
            let stored = self.at_rest().open_manifest(name, stored).await?;
            let doc: Value = serde_json::from_slice(&stored.content).unwrap_or_default();
            let layers = doc["layers"].as_array().cloned().unwrap_or_default();
            self.merge_signature_layers(name, &subject, layers).await?;
            self.remove_superseded_signatures(name, &before).await?;
        }
        Ok(())
    }

    /// Signs what a push stored, with every profile the account's signing configuration
    /// matches to the repository; records each profile's status before returning, so the
    /// push is acknowledged with it. Never fails: a failure is the status's.
    pub async fn sign_pushed(&self, pusher: Pusher<'_>, name: &str, put: &ManifestPut) {
        if !put.signable {
            return;
        }
        let (account, repository) = split_repository_key(self.registry_id(), name);
        let config = match self.signing_configuration(account).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, repository = name, "could not read the signing configuration");
                return;
            }
        };
        let profiles = config.profiles_for(repository);
        for arn in &profiles {
            let arn = *arn;
            let outcome = self.sign_with(pusher, name, account, repository, arn, put).await;
            let (failure_code, failure_reason) = match outcome {
                Ok(()) => (None, None),
                Err((code, reason)) => (Some(code.to_string()), Some(reason)),
            };
            let signing = ImageSigning {
                profile_arn: arn.to_string(),
                status: if failure_code.is_none() { "COMPLETE" } else { "FAILED" }.to_string(),
                failure_code,
                failure_reason,
                updated_at: now_ms(),
            };
            if let Err(e) = self.meta().put_image_signing(name, put.digest.as_str(), &signing).await {
                tracing::warn!(error = %e, repository = name, digest = %put.digest, "could not record a signing status");
            }
        }
        let is_index = [media_types::OCI_INDEX, media_types::DOCKER_MANIFEST_LIST].contains(&put.media_type.as_str());
        if is_index && !profiles.is_empty() {
            self.unsign_index_children(name, repository, account, &put.digest, &profiles).await;
        }
    }

    /// One profile's signatures of a pushed image: one per pushed tag (one without a tag for a
    /// push by digest).
    async fn sign_with(
        &self,
        pusher: Pusher<'_>,
        name: &str,
        account: &str,
        repository: &str,
        arn: &str,
        put: &ManifestPut,
    ) -> Result<(), Refusal> {
        let profile = self.usable_profile(account, arn).await?;
        let host = self.image_host(account);
        let references: Vec<String> = if put.tags.is_empty() {
            vec![format!("{host}/{repository}")]
        } else {
            put.tags.iter().map(|t| format!("{host}/{repository}:{t}")).collect()
        };
        // A push of what is signed already (a re-push, another node's push of the same tag)
        // adds nothing: references this profile's key signed for this digest are skipped.
        let existing = self.tag_signatures(name, &put.digest).await.map_err(error)?;
        let public =
            verify::TrustedKey::from_pem(arn, &profile.public_key_pem).map_err(|e| (failure::SIGNING_ERROR, e))?;
        let signed = |reference: &str| {
            existing.iter().any(|s| {
                parse_simple_signing(&s.payload)
                    .is_some_and(|c| c.docker_reference == reference && c.manifest_digest == put.digest.as_str())
                    && public.verifies(&s.payload, &s.signature)
            })
        };
        let references: Vec<String> = references.into_iter().filter(|r| !signed(r)).collect();
        if references.is_empty() {
            return Ok(());
        }
        // Only what is to be signed now needs the pusher's permission: a re-push of a signed
        // image by someone else keeps its status.
        if let Some(who) = pusher {
            let target = Target::Resource { arn, account };
            match who.authorizer.authorize(who.caller, "signer:SignPayload", target, who.env).await {
                Ok(Ok(())) => {}
                Ok(Err(denied)) => return Err((failure::SIGNING_NOT_AUTHORIZED, denied.message)),
                Err(e) => return Err((failure::SIGNING_ERROR, e.to_string())),
            }
        }
        let key = self.signing_key(&profile).map_err(|e| (failure::SIGNING_ERROR, e.to_string()))?;
        let rng = SystemRandom::new();
        let now = now_ms() / 1000;
        let mut layers = Vec::new();
        let mut bundles = Vec::new();
        for reference in references {
            let payload = simple_signing_payload(&reference, put.digest.as_str(), "Berth", now);
            let signature =
                key.sign(&rng, &payload).map_err(|_| (failure::SIGNING_ERROR, "ECDSA signing failed".into()))?;
            let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
            let stored = self.store_small_blob(name, payload.clone()).await.map_err(error)?;
            layers.push(json!({
                "mediaType": SIMPLE_SIGNING,
                "digest": stored.0.as_str(),
                "size": stored.1,
                "annotations": { SIGNATURE_ANNOTATION: signature },
            }));
            bundles.push((payload, stored, signature));
        }
        self.add_signature_layers(name, &put.digest, layers).await.map_err(error)?;
        for (payload, stored, signature) in bundles {
            self.attach_signature_bundle(name, put, &profile, &payload, stored, &signature).await.map_err(error)?;
        }
        Ok(())
    }

    /// The profile `arn` if it is one of `account`'s and not revoked.
    async fn usable_profile(&self, account: &str, arn: &str) -> Result<SigningProfile, Refusal> {
        match self.meta().signing_profile(arn).await {
            Ok(Some(p)) if p.account_id == account && p.revoked_at.is_none() => Ok(p),
            Ok(Some(p)) if p.account_id == account => {
                Err((failure::PROFILE_REVOKED, format!("The signing profile {arn} is revoked")))
            }
            Ok(_) => Err((failure::PROFILE_NOT_FOUND, format!("The signing profile {arn} does not exist"))),
            Err(e) => Err((failure::SIGNING_ERROR, e.to_string())),
        }
    }

    /// Adds signature layers to `subject`'s `.sig` manifest, keeping every signature it holds:
    /// the manifest is rebuilt from what the tag points at now plus the layers it lacks, and
    /// read back until it holds them (a client or another node may move the tag meanwhile).
    pub(crate) async fn add_signature_layers(
        &self,
        name: &str,
        subject: &Digest,
        layers: Vec<Value>,
    ) -> Result<(), RegistryError> {
        let lock = self.signature_lock(name, &signature_tag(subject.as_str())).await?;
        let added = self.merge_signature_layers(name, subject, layers).await;
        lock.release().await;
        added
    }

    /// `add_signature_layers` under the signature tag's lock, which the caller holds.
    async fn merge_signature_layers(
        &self,
        name: &str,
        subject: &Digest,
        layers: Vec<Value>,
    ) -> Result<(), RegistryError> {
        let tag = signature_tag(subject.as_str());
        for _ in 0..8 {
            let (current, mut held) = self.signature_layers(name, &tag).await?;
            let missing: Vec<Value> =
                layers.iter().filter(|l| !held.iter().any(|h| same_layer(h, l))).cloned().collect();
            if missing.is_empty() {
                return Ok(());
            }
            held.extend(missing);
            self.write_signature_manifest(name, subject, current, &held).await?;
        }
        Err(RegistryError::Internal(format!("the signatures of {subject} in {name} kept moving; try again")))
    }

    /// Stores `layers` as `subject`'s `.sig` manifest (its config lists them as `diff_ids`, as
    /// containers/image writes it) and removes the manifest it replaces (`current`); with no
    /// layers left, the tag goes with its manifest. The caller holds the tag's lock.
    async fn write_signature_manifest(
        &self,
        name: &str,
        subject: &Digest,
        current: Option<Digest>,
        layers: &[Value],
    ) -> Result<(), RegistryError> {
        if layers.is_empty() {
            if let Some(current) = current {
                self.remove_image(name, &current)
                    .await?
                    .map_err(|parents| RegistryError::ReferencedByIndex { digest: current.clone(), parents })?;
            }
            return Ok(());
        }
        let diff_ids: Vec<&str> = layers.iter().filter_map(|l| l["digest"].as_str()).collect();
        let config = json!({
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = serde_json::to_vec(&config).expect("a config serializes");
        let (config_digest, config_size) = self.store_small_blob(name, config).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "config": { "mediaType": media_types::OCI_IMAGE_CONFIG, "digest": config_digest.as_str(), "size": config_size },
            "layers": layers,
        });
        let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let tag = signature_tag(subject.as_str());
        self.put_manifest(name, &tag, Some(media_types::OCI_MANIFEST), body, &[]).await?;
        if let Some(previous) = current {
            self.remove_superseded_signatures(name, &previous).await?;
        }
        Ok(())
    }

    /// An index is signed itself, its children are not: children pushed by digest before it
    /// (and so signed as digest pushes, without a tag in their identity) lose the signatures
    /// `profiles` made for them, with their bundles and statuses. A child with tags of its own
    /// was pushed as an image and keeps its signatures; clients' signatures always stay.
    async fn unsign_index_children(
        &self,
        name: &str,
        repository: &str,
        account: &str,
        index: &Digest,
        profiles: &[&str],
    ) {
        if let Err(e) = self.try_unsign_index_children(name, repository, account, index, profiles).await {
            tracing::warn!(error = %e, repository = name, %index, "could not remove the signatures of an index's children");
        }
    }

    async fn try_unsign_index_children(
        &self,
        name: &str,
        repository: &str,
        account: &str,
        index: &Digest,
        profiles: &[&str],
    ) -> Result<(), RegistryError> {
        let Some(record) = self.meta().image(name, index.as_str()).await? else { return Ok(()) };
        let mut keys = Vec::new();
        for arn in profiles {
            if let Some(p) = self.meta().signing_profile(arn).await?.filter(|p| p.account_id == account) {
                keys.push(verify::TrustedKey::from_pem(arn, &p.public_key_pem).map_err(RegistryError::Internal)?);
            }
        }
        let identity = format!("{}/{repository}", self.image_host(account));
        for child in &record.children {
            let Ok(child) = Digest::parse(child) else { continue };
            let untagged = self.meta().image(name, child.as_str()).await?.is_some_and(|c| c.tags.is_empty());
            if !untagged || self.meta().image_signings(name, child.as_str()).await?.is_empty() {
                continue;
            }
            let tag = signature_tag(child.as_str());
            let lock = self.signature_lock(name, &tag).await?;
            // The layers kept, with the key that made each (if one of `keys`), and the payloads
            // of those removed.
            let rewritten = async {
                let (current, layers) = self.signature_layers(name, &tag).await?;
                let (mut keep, mut kept_by, mut removed) = (Vec::new(), Vec::new(), HashSet::new());
                for layer in &layers {
                    let (blob, signature) =
                        (layer["digest"].as_str(), layer["annotations"][SIGNATURE_ANNOTATION].as_str());
                    let payload = match blob {
                        Some(b) => self.read_small_blob(name, b).await,
                        None => None,
                    };
                    let signer = match (&payload, signature) {
                        (Some(p), Some(sig)) => keys.iter().find(|k| k.verifies(p, sig)).map(|k| k.name.clone()),
                        _ => None,
                    };
                    let tagless = payload
                        .as_deref()
                        .and_then(parse_simple_signing)
                        .is_some_and(|c| c.docker_reference == identity && c.manifest_digest == child.as_str());
                    if signer.is_some() && tagless {
                        removed.extend(blob.map(str::to_string));
                    } else {
                        keep.push(layer.clone());
                        kept_by.extend(signer);
                    }
                }
                if keep.len() != layers.len() {
                    self.write_signature_manifest(name, &child, current, &keep).await?;
                }
                Ok::<_, RegistryError>((kept_by, removed))
            }
            .await;
            lock.release().await;
            let (kept_by, removed) = rewritten?;
            // Berth's bundles of the signatures removed, and the statuses of profiles that no
            // longer sign the child.
            for r in self.meta().referrers(name, &child, Some(SIGSTORE_BUNDLE)).await? {
                let Ok(d) = Digest::parse(&r.digest) else { continue };
                let Some(m) = self.meta().manifest(name, &d).await? else { continue };
                let m = self.at_rest().open_manifest(name, m).await?;
                let doc: Value = serde_json::from_slice(&m.content).unwrap_or_default();
                let ours = doc["annotations"][PROFILE_ANNOTATION].is_string();
                let payload = doc["layers"][1]["digest"].as_str().unwrap_or_default();
                if ours && removed.contains(payload) {
                    let _ = self.remove_image(name, &d).await?;
                }
            }
            for arn in profiles {
                if !kept_by.iter().any(|k| k == arn) {
                    self.meta().delete_image_signing(name, child.as_str(), arn).await?;
                }
            }
        }
        Ok(())
    }

    /// The manifest `tag` points at (if any) and its layers.
    async fn signature_layers(&self, name: &str, tag: &str) -> Result<(Option<Digest>, Vec<Value>), RegistryError> {
        let Some(digest) = self.meta().resolve_tag(name, tag).await? else { return Ok((None, Vec::new())) };
        let Some(stored) = self.meta().manifest(name, &digest).await? else { return Ok((None, Vec::new())) };
        let stored = self.at_rest().open_manifest(name, stored).await?;
        let doc: Value = serde_json::from_slice(&stored.content).unwrap_or_default();
        let layers = doc["layers"].as_array().cloned().unwrap_or_default();
        Ok((Some(digest), layers))
    }

    /// Removes a `.sig` manifest a newer one replaced, once nothing tags or lists it.
    pub(crate) async fn remove_superseded_signatures(&self, name: &str, digest: &Digest) -> Result<(), RegistryError> {
        let untagged = self.meta().image(name, digest.as_str()).await?.is_some_and(|i| i.tags.is_empty());
        if untagged {
            // Listed by an index meanwhile (not something a signature is): it stays.
            let _ = self.remove_image(name, digest).await?;
        }
        Ok(())
    }

    /// The referrer that holds one signature as a sigstore bundle: a message signature over the
    /// simple-signing payload (also a layer, so the referrer verifies on its own), the profile
    /// ARN as the public-key hint.
    async fn attach_signature_bundle(
        &self,
        name: &str,
        image: &ManifestPut,
        profile: &SigningProfile,
        payload: &[u8],
        stored_payload: (Digest, u64),
        signature: &str,
    ) -> Result<(), RegistryError> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let bundle = json!({
            "mediaType": SIGSTORE_BUNDLE,
            "verificationMaterial": { "publicKey": { "hint": profile.arn } },
            "messageSignature": {
                "messageDigest": { "algorithm": "SHA2_256", "digest": b64(&Sha256::digest(payload)) },
                "signature": signature,
            },
        });
        let bundle = serde_json::to_vec(&bundle).expect("a bundle serializes");
        let (bundle_digest, bundle_size) = self.store_small_blob(name, bundle).await?;
        let (empty_digest, _) = self.store_small_blob(name, b"{}".to_vec()).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "artifactType": SIGSTORE_BUNDLE,
            "config": { "mediaType": media_types::OCI_EMPTY, "digest": empty_digest.as_str(), "size": 2, "data": "e30=" },
            "layers": [
                { "mediaType": SIGSTORE_BUNDLE, "digest": bundle_digest.as_str(), "size": bundle_size },
                { "mediaType": SIMPLE_SIGNING, "digest": stored_payload.0.as_str(), "size": stored_payload.1 },
            ],
            "subject": { "mediaType": image.media_type, "digest": image.digest.as_str(), "size": image.size },
            "annotations": {
                "dev.sigstore.bundle.content": "message-signature",
                PROFILE_ANNOTATION: profile.arn,
            },
        });
        let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let digest = Digest::from_bytes(Algorithm::Sha256, &body);
        self.put_manifest(name, digest.as_str(), Some(media_types::OCI_MANIFEST), body, &[]).await?;
        Ok(())
    }
}

/// Whether two signature layers are one signature (same payload, same signature).
fn same_layer(a: &Value, b: &Value) -> bool {
    a["digest"] == b["digest"] && a["annotations"][SIGNATURE_ANNOTATION] == b["annotations"][SIGNATURE_ANNOTATION]
}

fn error(e: RegistryError) -> Refusal {
    (failure::SIGNING_ERROR, e.to_string())
}

/// A held `Registry::signature_lock`. `release` gives the lease up; dropped without it (the
/// request was cancelled), the lease is given up in the background.
pub(crate) struct SignatureLock {
    key: String,
    holder: String,
    meta: std::sync::Arc<dyn berth_meta::MetaStore>,
    released: bool,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl SignatureLock {
    pub(crate) async fn release(mut self) {
        self.released = true;
        if let Err(e) = self.meta.release_lease(&self.key, &self.holder).await {
            tracing::warn!(error = %e, lease = %self.key, "could not release a signature lock");
        }
    }
}

impl Drop for SignatureLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (meta, key, holder) = (self.meta.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.holder));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = meta.release_lease(&key, &holder).await;
            });
        }
    }
}
