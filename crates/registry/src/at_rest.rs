//! Blob bytes at rest (ARCHITECTURE.md, "Encryption at rest"): which key protects a
//! repository's blobs, a blob's or an upload's data keys wrapped under it — the master keyring
//! for `AES256`, the repository's KMS key through ECR's grant for `KMS` and `KMS_DSSE` — and
//! a sealed blob's plaintext, whole or a range, read from its stored bytes.

use std::sync::Arc;

use berth_envelope::{BlobKeys, Envelope};
use berth_meta::{
    BlobKeyWrapping, EncryptionType, MASTER_WRAPPING, ManifestKeys, ManifestSummary, MetaStore, Repository, SealedKind,
    StoredManifest, manifest_keys_id, upload_keys_id,
};
use berth_oci::{ByteRange, Digest};
use berth_store::{BlobStore, ByteStream, StoreError};

use crate::RegistryError;
use crate::kms::{EncryptionContext, Kms, KmsCaller};
use crate::secrets::MasterKeys;

type Result<T> = std::result::Result<T, RegistryError>;

/// What a repository's new blobs are sealed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protection {
    /// [`MASTER_WRAPPING`] or the ARN of the repository's KMS key.
    pub wrapping: String,
    /// AEAD layers: 2 for `KMS_DSSE`, else 1.
    pub layers: usize,
    /// The repository's ARN: ECR uses a KMS key through the grant made for it.
    pub repository_arn: String,
}

/// What a wrapping of data keys is bound to: an upload's keys to the upload until it is
/// committed, a blob's to its digest (the keyring's identity, or the KMS encryption context).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Binding<'a> {
    Upload(&'a str),
    Blob(&'a Digest),
    /// A manifest of a repository, by `manifest_keys_id(repository, digest)`.
    Manifest(&'a str),
}

impl Binding<'_> {
    fn kind(&self) -> SealedKind {
        match self {
            Binding::Upload(_) | Binding::Blob(_) => SealedKind::BlobDataKeys,
            Binding::Manifest(_) => SealedKind::ManifestDataKeys,
        }
    }

    fn master_id(&self) -> String {
        match self {
            Binding::Upload(id) => upload_keys_id(id),
            Binding::Blob(d) => d.to_string(),
            Binding::Manifest(id) => id.to_string(),
        }
    }

    fn context(&self) -> EncryptionContext {
        match self {
            Binding::Upload(id) => [("berth:upload".to_string(), id.to_string())].into(),
            Binding::Blob(d) => [("berth:blob".to_string(), d.to_string())].into(),
            Binding::Manifest(id) => [("berth:manifest".to_string(), id.to_string())].into(),
        }
    }
}

/// What a sealed manifest's annotations are bound to, apart from its content.
fn annotations_context(id: &str) -> Vec<u8> {
    [b"annotations\n".as_slice(), id.as_bytes()].concat()
}

/// A manifest as it is stored: its content (sealed if `keys` is set), its annotations for
/// the referrers API (sealed and base64 then), and its keys.
pub(crate) struct ManifestAtRest {
    pub content: Vec<u8>,
    pub annotations: Option<String>,
    pub keys: Option<ManifestKeys>,
}

fn keys_error(e: berth_envelope::EnvelopeError) -> RegistryError {
    RegistryError::Internal(format!("a blob's data keys: {e}"))
}

/// How long a node reuses data keys it opened for a read: a disabled key, one pending deletion
/// or a retired grant stops reads within this, as other per-node caches see changes.
const OPENED_KEYS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Entries at most: past it the cache starts again.
const OPENED_KEYS_MAX: usize = 4096;

/// Data keys opened for reads, by what opened them (the wrapping key, the binding and the
/// wrapped bytes): a manifest GET or a blob GET of a hot image opens its keys once a second,
/// not once a request (unwrapping, and the AES and HKDF key schedules of an `Envelope`).
#[derive(Default, Clone)]
pub(crate) struct OpenedKeys(Arc<std::sync::Mutex<std::collections::HashMap<Vec<u8>, OpenedAt>>>);

/// Keys opened, and when.
type OpenedAt = (std::time::Instant, Envelope);

impl OpenedKeys {
    fn key(p: &Protection, binding: Binding<'_>, wrapped: &[u8]) -> Vec<u8> {
        [p.wrapping.as_bytes(), b"\0", binding.master_id().as_bytes(), b"\0", wrapped].concat()
    }

    fn get(&self, key: &[u8]) -> Option<Envelope> {
        let map = self.0.lock().expect("opened keys");
        map.get(key).filter(|(at, _)| at.elapsed() < OPENED_KEYS_TTL).map(|(_, e)| e.clone())
    }

    fn put(&self, key: Vec<u8>, envelope: Envelope) {
        let mut map = self.0.lock().expect("opened keys");
        if map.len() >= OPENED_KEYS_MAX {
            map.retain(|_, (at, _)| at.elapsed() < OPENED_KEYS_TTL);
            if map.len() >= OPENED_KEYS_MAX {
                map.clear();
            }
        }
        map.insert(key, (std::time::Instant::now(), envelope));
    }
}

/// The registry's part that seals and opens blob bytes: cheap to clone, so a scan's
/// background thread can hold one.
#[derive(Clone)]
pub(crate) struct AtRest {
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) kms: Kms,
    pub(crate) master: Arc<MasterKeys>,
    pub(crate) region: String,
    pub(crate) registry_id: String,
    pub(crate) opened: OpenedKeys,
}

impl AtRest {
    fn repository_arn(&self, key: &str) -> String {
        crate::repositories::repository_arn(&self.registry_id, &self.region, key)
    }

    /// How a repository's new blobs are sealed; `None` for an `AES256` repository on a store
    /// that encrypts what it holds itself (SSE-S3, which is what ECR's `AES256` is).
    pub fn protection(&self, repo: &Repository) -> Result<Option<Protection>> {
        let repository_arn = self.repository_arn(&repo.name);
        let kms = |layers| match &repo.settings.kms_key {
            Some(arn) => Ok(Some(Protection { wrapping: arn.clone(), layers, repository_arn: repository_arn.clone() })),
            None => Err(RegistryError::Internal(format!("repository {} is KMS-encrypted without a key", repo.name))),
        };
        match repo.settings.encryption_type {
            EncryptionType::Aes256 if self.blobs.encrypts_at_rest() => Ok(None),
            EncryptionType::Aes256 => {
                Ok(Some(Protection { wrapping: MASTER_WRAPPING.to_string(), layers: 1, repository_arn }))
            }
            EncryptionType::Kms => kms(1),
            EncryptionType::KmsDsse => kms(2),
        }
    }

    /// The protection an upload or a manifest recorded (its repository's when it was made).
    pub fn recorded_protection(&self, repository: &str, wrapping: &str) -> Protection {
        Protection { wrapping: wrapping.to_string(), layers: 0, repository_arn: self.repository_arn(repository) }
    }

    /// `keys` wrapped under `p`, bound to `binding`. A KMS key is used through the
    /// repository's grant: a disabled key, one pending deletion or a retired grant refuses.
    pub async fn wrap(&self, p: &Protection, binding: Binding<'_>, keys: &BlobKeys) -> Result<Vec<u8>> {
        if p.wrapping == MASTER_WRAPPING {
            return Ok(self.master.seal(binding.kind(), &binding.master_id(), &keys.to_bytes()).into_bytes());
        }
        self.kms
            .ecr_seal(&p.wrapping, &p.repository_arn, &binding.context(), &keys.to_bytes())
            .await
            .map_err(RegistryError::Kms)
    }

    /// Opens what [`AtRest::wrap`] wrapped under `p`.
    pub async fn unwrap(&self, p: &Protection, binding: Binding<'_>, wrapped: &[u8]) -> Result<BlobKeys> {
        let bytes = if p.wrapping == MASTER_WRAPPING {
            self.master.open(binding.kind(), &binding.master_id(), wrapped)?
        } else {
            self.kms
                .ecr_open(&p.wrapping, &p.repository_arn, &binding.context(), wrapped)
                .await
                .map_err(RegistryError::Kms)?
        };
        BlobKeys::from_bytes(&bytes).map_err(keys_error)
    }

    /// What [`AtRest::unwrap`] opens, ready to open bytes, for a read: reused for
    /// `OPENED_KEYS_TTL` by this node.
    async fn open_for_read(&self, p: &Protection, binding: Binding<'_>, wrapped: &[u8]) -> Result<Envelope> {
        let key = OpenedKeys::key(p, binding, wrapped);
        if let Some(e) = self.opened.get(&key) {
            return Ok(e);
        }
        let envelope = self.unwrap(p, binding, wrapped).await?.envelope();
        self.opened.put(key, envelope.clone());
        Ok(envelope)
    }

    /// A wrapping under `p` added to the sealed blob `digest` (wrapped as `existing`) if it has
    /// none under that key yet: how a repository with another key comes to read a blob stored
    /// once, by a commit of the same digest or by a replica. Nothing for a blob stored as
    /// sent. The keys are opened through a wrapping Berth may open itself; a key that refuses
    /// (disabled, no grant) is the error.
    pub async fn add_wrapping_if_missing(
        &self,
        digest: &Digest,
        existing: &[BlobKeyWrapping],
        p: &Protection,
    ) -> Result<()> {
        if existing.is_empty() || existing.iter().any(|w| w.wrapping == p.wrapping) {
            return Ok(());
        }
        let keys = self.unwrap_any(digest, existing).await?;
        let wrapped = self.wrap(p, Binding::Blob(digest), &keys).await?;
        let w = BlobKeyWrapping { wrapping: p.wrapping.clone(), layers: keys.layers() as u32, wrapped };
        Ok(self.meta.add_blob_key_wrapping(digest, &w).await?)
    }

    /// A sealed blob's keys opened through any of its wrappings ECR may open on its own
    /// behalf (the master keyring's first, then each usable KMS key's): to add a wrapping for
    /// another key, and for `berth fsck`.
    pub async fn unwrap_any(&self, digest: &Digest, wrappings: &[BlobKeyWrapping]) -> Result<BlobKeys> {
        let binding = Binding::Blob(digest);
        let mut failure = None;
        let (master, kms): (Vec<_>, Vec<_>) = wrappings.iter().partition(|w| w.wrapping == MASTER_WRAPPING);
        for w in master.into_iter().chain(kms) {
            let opened = if w.wrapping == MASTER_WRAPPING {
                self.master.open(SealedKind::BlobDataKeys, &binding.master_id(), &w.wrapped)
            } else {
                self.kms.open_as_ecr(&w.wrapping, &binding.context(), &w.wrapped).await.map_err(RegistryError::Kms)
            };
            match opened {
                Ok(bytes) => return BlobKeys::from_bytes(&bytes).map_err(keys_error),
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| RegistryError::Internal(format!("blob {digest} has no data keys"))))
    }

    /// How to read a sealed blob for `repository`: through its own key's wrapping (so a
    /// disabled key or a retired grant stops the read), or, for a blob that has none for it
    /// (linked before the repository's key protected it, e.g. on a store that encrypts
    /// `AES256` itself), through any wrapping ECR may open.
    pub async fn envelope_for(
        &self,
        repo: &Repository,
        digest: &Digest,
        wrappings: &[BlobKeyWrapping],
    ) -> Result<Envelope> {
        let wanted = self.protection(repo)?;
        if let Some(p) = &wanted
            && let Some(w) = wrappings.iter().find(|w| w.wrapping == p.wrapping)
        {
            return self.open_for_read(p, Binding::Blob(digest), &w.wrapped).await;
        }
        Ok(self.unwrap_any(digest, wrappings).await?.envelope())
    }

    /// A blob's plaintext as `repository` serves it, whole or the inclusive `range`: a blob
    /// stored as sent is read as it is, a sealed one opened through the repository's key.
    pub async fn open_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        range: Option<ByteRange>,
    ) -> Result<ByteStream> {
        let wrappings = self.meta.blob_keys(digest).await?;
        if wrappings.is_empty() {
            return match self.blobs.read(digest, range).await {
                Ok(s) => Ok(s),
                Err(StoreError::NotFound) => {
                    tracing::error!(%digest, "blob is linked but its bytes are missing from storage");
                    Err(crate::service::blob_unknown(digest))
                }
                Err(e) => Err(e.into()),
            };
        }
        let repo = self
            .meta
            .repository(repository)
            .await?
            .ok_or_else(|| RegistryError::RepositoryNotFound { name: repository.to_string() })?;
        let envelope = self.envelope_for(&repo, digest, &wrappings).await?;
        self.read(digest, size, &envelope, range).await
    }

    /// The protections of every repository that links `digest` (one per key, with the most
    /// layers any of them wants), and `also` besides: what a sealed blob's keys are wrapped
    /// under when they are made anew.
    pub async fn linking_protections(
        &self,
        digest: &Digest,
        also: Option<&Protection>,
    ) -> Result<std::collections::BTreeMap<String, Protection>> {
        let mut protections: std::collections::BTreeMap<String, Protection> = Default::default();
        let mut add = |p: Protection| {
            if protections.get(&p.wrapping).is_none_or(|q| p.layers > q.layers) {
                protections.insert(p.wrapping.clone(), p);
            }
        };
        for name in self.meta.repositories_linking(digest).await? {
            if let Some(repo) = self.meta.repository(&name).await?
                && let Some(p) = self.protection(&repo)?
            {
                add(p);
            }
        }
        if let Some(p) = also {
            add(p.clone());
        }
        Ok(protections)
    }

    /// `keys` of the blob `digest` wrapped under each of `protections`; the first refusal is
    /// the error (nothing is recorded).
    pub async fn wrap_for_all(
        &self,
        digest: &Digest,
        keys: &BlobKeys,
        protections: impl Iterator<Item = &Protection>,
    ) -> Result<Vec<BlobKeyWrapping>> {
        let mut wrappings = Vec::new();
        for p in protections {
            let wrapped = self.wrap(p, Binding::Blob(digest), keys).await?;
            wrappings.push(BlobKeyWrapping { wrapping: p.wrapping.clone(), layers: keys.layers() as u32, wrapped });
        }
        Ok(wrappings)
    }

    /// Records `wrappings` as the blob's keys (replacing what was recorded), before its bytes
    /// sealed under them are published.
    pub async fn record_new_keys(&self, digest: &Digest, wrappings: &[BlobKeyWrapping]) -> Result<()> {
        let Some((first, rest)) = wrappings.split_first() else {
            return Err(RegistryError::Internal(format!("blob {digest}: new keys with no key to wrap them under")));
        };
        self.meta.claim_blob_keys(digest, first).await?;
        for w in rest {
            self.meta.add_blob_key_wrapping(digest, w).await?;
        }
        Ok(())
    }

    /// A manifest of `repo` as it is to be stored: sealed under new data keys wrapped under the
    /// repository's key (a disabled key refuses: `PutImage`'s `KmsException`), its
    /// annotations sealed apart under the same keys; as sent when the repository's blobs are
    /// left to the store.
    pub async fn seal_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
        content: Vec<u8>,
        annotations: Option<String>,
    ) -> Result<ManifestAtRest> {
        let Some(p) = self.protection(repo)? else {
            return Ok(ManifestAtRest { content, annotations, keys: None });
        };
        let id = manifest_keys_id(&repo.name, digest.as_str());
        let keys = BlobKeys::generate(p.layers);
        let envelope = keys.envelope();
        let sealed = envelope.seal(&content).map_err(keys_error)?;
        let annotations = annotations.map(|a| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(envelope.seal_value(&annotations_context(&id), a.as_bytes()))
        });
        let wrapped = self.wrap(&p, Binding::Manifest(&id), &keys).await?;
        Ok(ManifestAtRest { content: sealed, annotations, keys: Some(ManifestKeys { wrapping: p.wrapping, wrapped }) })
    }

    /// A manifest's data keys, opened through the key they were wrapped under (a disabled
    /// key, one pending deletion or a retired grant refuses).
    async fn manifest_keys(&self, repository: &str, digest: &str, keys: &ManifestKeys) -> Result<(String, Envelope)> {
        let id = manifest_keys_id(repository, digest);
        let p = self.recorded_protection(repository, &keys.wrapping);
        let opened = self.open_for_read(&p, Binding::Manifest(&id), &keys.wrapped).await?;
        Ok((id, opened))
    }

    /// A stored manifest of `repository` with its content in clear.
    pub async fn open_manifest(&self, repository: &str, mut m: StoredManifest) -> Result<StoredManifest> {
        let Some(keys) = m.keys.take() else { return Ok(m) };
        let (_, opened) = self.manifest_keys(repository, m.digest.as_str(), &keys).await?;
        m.content = opened
            .open(&m.content)
            .map_err(|e| RegistryError::Internal(format!("manifest {} of {repository}: {e}", m.digest)))?;
        Ok(m)
    }

    /// A referrer of `repository` as the referrers API lists it: its annotations in clear.
    pub async fn open_summary(&self, repository: &str, mut s: ManifestSummary) -> Result<ManifestSummary> {
        let Some(keys) = s.keys.take() else { return Ok(s) };
        let Some(sealed) = s.annotations.take() else { return Ok(s) };
        let (id, opened) = self.manifest_keys(repository, &s.digest, &keys).await?;
        let damaged =
            |e: String| RegistryError::Internal(format!("the annotations of {} in {repository}: {e}", s.digest));
        let sealed = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(sealed).map_err(|e| damaged(e.to_string()))?
        };
        let plain = opened.open_value(&annotations_context(&id), &sealed).map_err(|e| damaged(e.to_string()))?;
        s.annotations = Some(String::from_utf8(plain).map_err(|e| damaged(e.to_string()))?);
        Ok(s)
    }

    /// A blob `repository` links, whole, as [`AtRest::open_blob`] reads it (its size from
    /// the link): for the scanner.
    pub async fn open_linked(&self, repository: &str, digest: &Digest) -> Result<ByteStream> {
        let size =
            self.meta.linked_blob(repository, digest).await?.ok_or_else(|| crate::service::blob_unknown(digest))?;
        self.open_blob(repository, digest, size, None).await
    }

    /// The plaintext of a sealed blob of `size` bytes (whole, or the inclusive `range`): only
    /// the chunks the range touches are read and opened.
    pub async fn read(
        &self,
        digest: &Digest,
        size: u64,
        envelope: &Envelope,
        range: Option<ByteRange>,
    ) -> Result<ByteStream> {
        let (span, opener) = envelope
            .open_range(size, range.map(|r| (r.start, r.end)))
            .map_err(|e| RegistryError::Internal(format!("blob {digest}: {e}")))?;
        let sealed = match self.blobs.read(digest, Some(ByteRange { start: span.start, end: span.end })).await {
            Ok(s) => s,
            Err(StoreError::NotFound) => {
                tracing::error!(%digest, "blob is linked but its bytes are missing from storage");
                return Err(crate::service::blob_unknown(digest));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(crate::blob_cipher::opening(sealed, opener))
    }
}

impl crate::Registry {
    /// ECR's rule for pulling from a repository a KMS key protects: principals of the key's
    /// own account pull through ECR's grant (their ECR permission decides); a principal of
    /// another account must also be allowed `kms:Decrypt` through ECR by the key policy (and
    /// its own IAM policies) — a repository policy that lets it pull is not enough (the
    /// seed's scenario). Refused as `RegistryError::Kms`, whose message names the key. Asked
    /// by every surface, after the ECR permission, for the actions `authz::decrypts` names.
    pub async fn check_pull_decrypt(&self, who: &KmsCaller<'_>, repository: &str) -> Result<()> {
        let (account, _) = crate::repositories::split_repository_key(self.registry_id(), repository);
        if account == who.caller.account_id {
            return Ok(());
        }
        let Some(repo) = self.meta().repository(repository).await? else { return Ok(()) };
        match (&repo.settings.encryption_type, &repo.settings.kms_key) {
            (EncryptionType::Kms | EncryptionType::KmsDsse, Some(key)) => {
                self.kms().check_ecr_decrypt_for(who, key).await.map_err(RegistryError::Kms)
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn at_rest(&self) -> AtRest {
        AtRest {
            meta: self.meta().clone(),
            blobs: self.blobs().clone(),
            kms: self.kms(),
            master: self.master_keys.clone(),
            region: self.region().to_string(),
            registry_id: self.registry_id().to_string(),
            opened: self.opened_keys.clone(),
        }
    }
}
