//! Blob bytes at rest (ARCHITECTURE.md, "Encryption at rest"): which key protects a
//! repository's blobs, a blob's or an upload's data keys wrapped under it — the master keyring
//! for `AES256`, the repository's KMS key through ECR's grant for `KMS` and `KMS_DSSE` — and
//! a sealed blob's plaintext, whole or a range, read from its stored bytes.

use std::sync::Arc;

use berth_envelope::BlobKeys;
use berth_meta::{BlobKeyWrapping, EncryptionType, MASTER_WRAPPING, MetaStore, Repository, SealedKind, upload_keys_id};
use berth_oci::{ByteRange, Digest};
use berth_store::{BlobStore, ByteStream, StoreError};

use crate::RegistryError;
use crate::kms::{EncryptionContext, Kms};
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
}

impl Binding<'_> {
    fn master_id(&self) -> String {
        match self {
            Binding::Upload(id) => upload_keys_id(id),
            Binding::Blob(d) => d.to_string(),
        }
    }

    fn context(&self) -> EncryptionContext {
        match self {
            Binding::Upload(id) => [("berth:upload".to_string(), id.to_string())].into(),
            Binding::Blob(d) => [("berth:blob".to_string(), d.to_string())].into(),
        }
    }
}

fn keys_error(e: berth_envelope::EnvelopeError) -> RegistryError {
    RegistryError::Internal(format!("a blob's data keys: {e}"))
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

    /// The protection an upload recorded (its repository's when it started).
    pub fn upload_protection(&self, repository: &str, wrapping: &str) -> Protection {
        Protection { wrapping: wrapping.to_string(), layers: 0, repository_arn: self.repository_arn(repository) }
    }

    /// `keys` wrapped under `p`, bound to `binding`. A KMS key is used through the
    /// repository's grant: a disabled key, one pending deletion or a retired grant refuses.
    pub async fn wrap(&self, p: &Protection, binding: Binding<'_>, keys: &BlobKeys) -> Result<Vec<u8>> {
        if p.wrapping == MASTER_WRAPPING {
            return Ok(self.master.seal(SealedKind::BlobDataKeys, &binding.master_id(), &keys.to_bytes()).into_bytes());
        }
        self.kms
            .ecr_seal(&p.wrapping, &p.repository_arn, &binding.context(), &keys.to_bytes())
            .await
            .map_err(RegistryError::Kms)
    }

    /// Opens what [`AtRest::wrap`] wrapped under `p`.
    pub async fn unwrap(&self, p: &Protection, binding: Binding<'_>, wrapped: &[u8]) -> Result<BlobKeys> {
        let bytes = if p.wrapping == MASTER_WRAPPING {
            self.master.open(SealedKind::BlobDataKeys, &binding.master_id(), wrapped)?
        } else {
            self.kms
                .ecr_open(&p.wrapping, &p.repository_arn, &binding.context(), wrapped)
                .await
                .map_err(RegistryError::Kms)?
        };
        BlobKeys::from_bytes(&bytes).map_err(keys_error)
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

    /// The keys to read a sealed blob for `repository`: through its own key's wrapping (so a
    /// disabled key or a retired grant stops the read), or, for a blob that has none for it
    /// (linked before the repository's key protected it, e.g. on a store that encrypts
    /// `AES256` itself), through any wrapping ECR may open.
    pub async fn keys_for(
        &self,
        repo: &Repository,
        digest: &Digest,
        wrappings: &[BlobKeyWrapping],
    ) -> Result<BlobKeys> {
        let wanted = self.protection(repo)?;
        if let Some(p) = &wanted
            && let Some(w) = wrappings.iter().find(|w| w.wrapping == p.wrapping)
        {
            return self.unwrap(p, Binding::Blob(digest), &w.wrapped).await;
        }
        self.unwrap_any(digest, wrappings).await
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
        let keys = self.keys_for(&repo, digest, &wrappings).await?;
        self.read(digest, size, &keys, range).await
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
        keys: &BlobKeys,
        range: Option<ByteRange>,
    ) -> Result<ByteStream> {
        let (span, opener) = keys
            .envelope()
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
    pub(crate) fn at_rest(&self) -> AtRest {
        AtRest {
            meta: self.meta().clone(),
            blobs: self.blobs().clone(),
            kms: self.kms(),
            master: self.master_keys.clone(),
            region: self.region().to_string(),
            registry_id: self.registry_id().to_string(),
        }
    }
}
