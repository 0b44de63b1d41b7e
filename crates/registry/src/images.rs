//! Images as the ECR API sees them: naming one by tag or digest (the one resolution both
//! surfaces use), listing and describing them (an index's size is its largest child's),
//! `PutImage`'s already-exists rule, deleting by id, and layer availability.

use std::collections::HashMap;

use berth_meta::{ImageFilter, ImageRecord, ImageScan, StatusFilter, StoredManifest, TagFilter};
use berth_oci::{Algorithm, Digest, accepts, validate_tag};

use crate::service::manifest_unknown;
use crate::{Registry, RegistryError};

type Result<T> = std::result::Result<T, RegistryError>;

/// An image as a request names it: by tag, by digest, or by both (which must agree).
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageRef<'a> {
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// A `/v2/` reference: a digest if it has an algorithm, else a tag.
    pub fn of_reference(reference: &'a str) -> Self {
        if reference.contains(':') {
            ImageRef { tag: None, digest: Some(reference) }
        } else {
            ImageRef { tag: Some(reference), digest: None }
        }
    }
}

/// A listing's filter as `ListImages` and `DescribeImages` take it: any tags unless asked,
/// and — as ECR lists them — only `ACTIVE` images unless a status is asked for.
pub fn listing_filter(tags: Option<TagFilter>, status: Option<StatusFilter>) -> ImageFilter {
    ImageFilter { tags: tags.unwrap_or(TagFilter::Any), status: status.unwrap_or(StatusFilter::Active) }
}

/// Why an image id names no image (ECR's `ImageFailure` codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageIdFailure {
    InvalidTag(String),
    InvalidDigest(String),
    MissingDigestAndTag,
    TagDoesNotMatchDigest,
    NotFound,
    /// Deleting it is refused: these indexes list it.
    ReferencedByIndex(Vec<String>),
}

/// An image with what `DescribeImages` shows beside its record.
#[derive(Debug, Clone)]
pub struct ImageDetail {
    pub record: ImageRecord,
    /// Its blobs' bytes; an index's is its largest child's, as ECR counts it.
    pub size: i64,
    /// The latest scan, without findings.
    pub scan: Option<ImageScan>,
}

/// What `delete_image_by_id` removed: the digest and each tag it removed (none for an untagged
/// image, which the request names as it was asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedImage {
    pub digest: Digest,
    pub tags: Vec<String>,
}

impl Registry {
    /// The digest an image id names, without asking whether the manifest is there: the one
    /// tag-or-digest resolution (manifest GET, `BatchGetImage`, deletes, scans). A tag that
    /// names nothing is `NotFound`.
    pub async fn resolve_reference(
        &self,
        repository: &str,
        id: ImageRef<'_>,
    ) -> Result<std::result::Result<Digest, ImageIdFailure>> {
        let by_tag = match id.tag {
            Some(t) if validate_tag(t).is_err() => return Ok(Err(ImageIdFailure::InvalidTag(t.to_string()))),
            Some(t) => match self.meta().resolve_tag(repository, t).await? {
                Some(d) => Some(d),
                None => return Ok(Err(ImageIdFailure::NotFound)),
            },
            None => None,
        };
        let by_digest = match id.digest {
            Some(d) => match Digest::parse(d) {
                Ok(d) => Some(d),
                Err(_) => return Ok(Err(ImageIdFailure::InvalidDigest(d.to_string()))),
            },
            None => None,
        };
        Ok(match (by_tag, by_digest) {
            (None, None) => Err(ImageIdFailure::MissingDigestAndTag),
            (Some(t), Some(d)) if t != d => Err(ImageIdFailure::TagDoesNotMatchDigest),
            (Some(d), _) | (None, Some(d)) => Ok(d),
        })
    }

    /// A manifest by tag or digest as stored (sealed if its repository seals them).
    async fn stored_manifest(&self, name: &str, reference: &str) -> Result<Option<StoredManifest>> {
        // A reference that is neither a tag nor a digest names no manifest that could exist:
        // not found, as the OCI conformance suite expects (only a PUT refuses it as invalid).
        Ok(match ImageRef::of_reference(reference) {
            // By tag, the hot path: one read.
            ImageRef { tag: Some(tag), .. } if validate_tag(tag).is_ok() => {
                self.meta().tagged_manifest(name, tag).await?
            }
            id => match self.resolve_reference(name, id).await? {
                Ok(digest) => self.meta().manifest(name, &digest).await?,
                Err(_) => None,
            },
        })
    }

    /// A manifest to look at, not to pull (the web console's image page): opened, archived
    /// ones too, without the pull gate or verification on pull, and no pull is recorded. The
    /// caller has authorized `ecr:BatchGetImage` (and the KMS decrypt check) first.
    pub async fn inspect_manifest(&self, name: &str, reference: &str) -> Result<StoredManifest> {
        match self.stored_manifest(name, reference).await? {
            Some(m) => self.at_rest().open_manifest(name, m).await,
            None => Err(self.not_found_in(name, manifest_unknown(reference)).await),
        }
    }

    /// A manifest by tag or digest, if the client's `Accept` values admit its media type.
    pub async fn get_manifest(&self, name: &str, reference: &str, accept: &[&str]) -> Result<StoredManifest> {
        let found = self.stored_manifest(name, reference).await?;
        // Opened through the repository's key, only once it is to be served.
        let found = match found {
            Some(m) if !m.archived && accepts(accept, &m.media_type) => {
                Some(self.at_rest().open_manifest(name, m).await?)
            }
            other => other,
        };
        match found {
            // ECR answers pulls of archived images with 404 until they are restored.
            Some(m) if m.archived => {
                Err(RegistryError::ManifestArchived { reference: reference.to_string(), digest: m.digest })
            }
            Some(m) if accepts(accept, &m.media_type) => {
                self.check_pull_gate(&m)?;
                self.check_pull_verification(name, &m).await?;
                Ok(m)
            }
            Some(m) => {
                Err(RegistryError::ManifestNotAccepted { reference: reference.to_string(), media_type: m.media_type })
            }
            None => Err(self.not_found_in(name, manifest_unknown(reference)).await),
        }
    }

    /// The digest of an image the repository holds, named by tag or digest.
    pub async fn resolve_image(
        &self,
        repository: &str,
        id: ImageRef<'_>,
    ) -> Result<std::result::Result<Digest, ImageIdFailure>> {
        let digest = match self.resolve_reference(repository, id).await? {
            Ok(d) => d,
            Err(f) => return Ok(Err(f)),
        };
        if self.meta().manifest(repository, &digest).await?.is_none() {
            return Ok(Err(ImageIdFailure::NotFound));
        }
        Ok(Ok(digest))
    }

    /// A page of (digest, tag) pairs after `after`, and whether more follow.
    pub async fn list_image_ids(
        &self,
        repository: &str,
        after: Option<(&str, &str)>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<(Vec<(String, Option<String>)>, bool)> {
        self.repository(repository).await?;
        let mut ids = self.meta().list_image_ids(repository, after, limit + 1, filter).await?;
        let more = ids.len() > limit as usize;
        ids.truncate(limit as usize);
        Ok((ids, more))
    }

    /// A page of images in digest order after `after`, described, and whether more follow.
    pub async fn describe_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<(Vec<ImageDetail>, bool)> {
        self.repository(repository).await?;
        let mut images = self.meta().list_images(repository, after, limit + 1, filter).await?;
        let more = images.len() > limit as usize;
        images.truncate(limit as usize);
        Ok((self.details(repository, images).await?, more))
    }

    /// One image's record.
    pub async fn image(&self, repository: &str, digest: &Digest) -> Result<Option<ImageRecord>> {
        Ok(self.meta().image(repository, digest.as_str()).await?)
    }

    /// One image, described.
    pub async fn describe_image(&self, repository: &str, digest: &Digest) -> Result<Option<ImageDetail>> {
        let Some(image) = self.meta().image(repository, digest.as_str()).await? else { return Ok(None) };
        Ok(self.details(repository, vec![image]).await?.pop())
    }

    /// Sizes and scans of a page of images: one query for every child of the page's indexes,
    /// one for the scans.
    async fn details(&self, repository: &str, images: Vec<ImageRecord>) -> Result<Vec<ImageDetail>> {
        let children: Vec<String> = images.iter().flat_map(|i| i.children.iter().cloned()).collect();
        let child_bytes: HashMap<String, i64> = if children.is_empty() {
            HashMap::new()
        } else {
            self.meta().image_blob_bytes(repository, &children).await?.into_iter().collect()
        };
        let digests: Vec<String> = images.iter().map(|i| i.digest.clone()).collect();
        let mut scans: HashMap<String, ImageScan> = self
            .meta()
            .image_scan_summaries(repository, &digests)
            .await?
            .into_iter()
            .map(|s| (s.digest.clone(), s))
            .collect();
        Ok(images
            .into_iter()
            .map(|record| {
                let size = record
                    .children
                    .iter()
                    .filter_map(|c| child_bytes.get(c))
                    .fold(record.blob_bytes, |largest, &c| largest.max(c));
                let scan = scans.remove(&record.digest);
                ImageDetail { record, size, scan }
            })
            .collect())
    }

    /// `PutImage`: the manifest put by tag (or by its digest), through the same path as a
    /// `/v2/` manifest PUT. An image (with that tag) the repository holds already is
    /// `ImageAlreadyExists` — except an archived one, which a put restores. A missing
    /// repository is created only by a `CREATE_ON_PUSH` template, as on `/v2/`. Returns the
    /// digest and the media type stored.
    pub async fn put_image(
        &self,
        pusher: crate::signing::Pusher<'_>,
        repository: &str,
        manifest: Vec<u8>,
        media_type: Option<&str>,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<(Digest, String)> {
        self.repository_for_push(repository).await?;
        let expected = digest.map(crate::service::digest_param).transpose()?;
        let actual = Digest::from_bytes(expected.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm()), &manifest);
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(RegistryError::ManifestDigestMismatch { expected, actual });
        }
        let stored = self.meta().manifest(repository, &actual).await?;
        let exists = match (&stored, tag) {
            (Some(m), _) if m.archived => false,
            (_, Some(t)) => self.meta().resolve_tag(repository, t).await?.as_ref() == Some(&actual),
            (stored, None) => stored.is_some(),
        };
        if exists {
            return Err(RegistryError::ImageAlreadyExists {
                repository: repository.to_string(),
                digest: actual,
                tag: tag.map(str::to_string),
            });
        }
        let reference = tag.map_or_else(|| actual.to_string(), str::to_string);
        let put = self.push_manifest(pusher, repository, &reference, media_type, manifest, &[]).await?;
        let media_type = self.meta().manifest(repository, &put.digest).await?.map(|m| m.media_type).unwrap_or_default();
        Ok((put.digest, media_type))
    }

    /// `BatchDeleteImage` of one id: a tag alone removes that tag, and the image goes with its
    /// last tag; a digest removes the image with all its tags (`delete_image`).
    pub async fn delete_image_by_id(
        &self,
        repository: &str,
        id: ImageRef<'_>,
    ) -> Result<std::result::Result<DeletedImage, ImageIdFailure>> {
        let digest = match self.resolve_image(repository, id).await? {
            Ok(d) => d,
            Err(f) => return Ok(Err(f)),
        };
        if let (Some(tag), None) = (id.tag, id.digest) {
            self.queue_replication_removal(repository, &digest, Some(tag)).await?;
            if self.meta().delete_tag(repository, tag).await? {
                self.replication_removal_done(repository, &digest).await?;
            }
            let remaining = self.meta().image(repository, digest.as_str()).await?.map_or(0, |i| i.tags.len());
            if remaining > 0 {
                return Ok(Ok(DeletedImage { digest, tags: vec![tag.to_string()] }));
            }
        }
        Ok(match self.delete_image(repository, &digest).await? {
            Ok(tags) => Ok(DeletedImage { digest, tags }),
            Err(parents) => Err(ImageIdFailure::ReferencedByIndex(parents)),
        })
    }

    /// The size of a layer the repository holds (`BatchCheckLayerAvailability`).
    pub async fn layer_size(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.meta().linked_blob(repository, digest).await?)
    }

    /// A URL the blob store hands out for reading a layer directly until `expires_at`, if it
    /// can (an object store's presigned GET); `None` and the registry serves it itself, as it
    /// does a layer it sealed (only Berth opens those).
    pub async fn direct_download_url(&self, digest: &Digest, expires_at: i64) -> Result<Option<String>> {
        match self.blobs().presigned_read_url(digest, expires_at).await? {
            Some(url) if self.meta().blob_keys(digest).await?.is_empty() => Ok(Some(url)),
            _ => Ok(None),
        }
    }

    /// `StartImageScan`: an archived image is not scanned, nor one no scanner reads.
    pub async fn start_image_scan(&self, repository: &str, digest: &Digest) -> Result<()> {
        let repo = self.repository(repository).await?;
        let manifest = self
            .meta()
            .manifest(repository, digest)
            .await?
            .ok_or_else(|| RegistryError::ManifestNotFound { reference: digest.to_string() })?;
        if manifest.archived {
            return Err(RegistryError::ImageArchived { digest: digest.clone() });
        }
        let manifest = self.at_rest().open_manifest(repository, manifest).await?;
        if let Some(why) = crate::scan::unscannable(&manifest.content) {
            return Err(RegistryError::ImageNotScannable { digest: digest.clone(), why });
        }
        self.request_scan(&repo, digest.as_str(), false).await?;
        Ok(())
    }

    /// The latest scan of an image, with its findings.
    pub async fn image_scan(&self, repository: &str, digest: &Digest) -> Result<ImageScan> {
        self.meta()
            .image_scan(repository, digest.as_str())
            .await?
            .ok_or_else(|| RegistryError::ScanNotFound { digest: digest.clone() })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use berth_meta::RepositorySettings;
    use berth_rules::lifecycle::StorageClass;

    fn stream(data: Vec<u8>) -> berth_store::ByteStream {
        Box::pin(futures_util::stream::once(async move { Ok(bytes::Bytes::from(data)) }))
    }

    /// Uploads a config and one layer and returns an image manifest referencing them.
    pub(crate) async fn image_manifest(registry: &Registry, repo: &str, layer: &[u8]) -> Vec<u8> {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let mut descriptors = Vec::new();
        for (data, media_type) in [
            (config, "application/vnd.oci.image.config.v1+json"),
            (layer.to_vec(), "application/vnd.oci.image.layer.v1.tar+gzip"),
        ] {
            let digest = Digest::from_bytes(Algorithm::Sha256, &data);
            let size = data.len();
            registry.upload_blob(repo, digest.as_str(), stream(data)).await.unwrap();
            descriptors.push(serde_json::json!({ "mediaType": media_type, "digest": digest.as_str(), "size": size }));
        }
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": [descriptors[1]],
        }))
        .unwrap()
    }

    async fn repository(registry: &Registry, name: &str) {
        registry.create_repository(name, &RepositorySettings::default(), &[], None).await.unwrap();
    }

    #[tokio::test]
    async fn put_image_refuses_what_the_repository_holds_already() {
        let (_dir, registry) = crate::test_registry().await;
        repository(&registry, "app").await;
        let manifest = image_manifest(&registry, "app", b"layer one").await;
        let (digest, media_type) =
            registry.put_image(None, "app", manifest.clone(), None, Some("v1"), None).await.unwrap();
        assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
        // The same image under the same tag, or by digest alone: already there.
        for tag in [Some("v1"), None] {
            match registry.put_image(None, "app", manifest.clone(), None, tag, None).await {
                Err(RegistryError::ImageAlreadyExists { digest: d, tag: t, .. }) => {
                    assert_eq!((d, t.as_deref()), (digest.clone(), tag));
                }
                other => panic!("expected ImageAlreadyExists, got {other:?}"),
            }
        }
        // Another tag for it is a new image id.
        registry.put_image(None, "app", manifest.clone(), None, Some("v2"), None).await.unwrap();
        // An archived image is restored by putting it again.
        registry.update_image_storage_class("app", digest.as_str(), StorageClass::Archive, 1).await.unwrap();
        registry.put_image(None, "app", manifest.clone(), None, Some("v1"), None).await.unwrap();
        assert!(!registry.image("app", &digest).await.unwrap().unwrap().archived);
        // A digest that is not the manifest's.
        let other = Digest::from_bytes(Algorithm::Sha256, b"something else");
        assert!(matches!(
            registry.put_image(None, "app", manifest.clone(), None, None, Some(other.as_str())).await,
            Err(RegistryError::ManifestDigestMismatch { .. })
        ));
        // No repository, and no template to create it.
        assert!(matches!(
            registry.put_image(None, "missing", manifest, None, Some("v1"), None).await,
            Err(RegistryError::RepositoryNotFound { name }) if name == "missing"
        ));
    }

    #[tokio::test]
    async fn an_index_is_as_large_as_its_largest_image() {
        let (_dir, registry) = crate::test_registry().await;
        repository(&registry, "multi").await;
        let small = image_manifest(&registry, "multi", b"small").await;
        let large = image_manifest(&registry, "multi", &[7u8; 5000]).await;
        let (small_digest, _) = registry.put_image(None, "multi", small.clone(), None, None, None).await.unwrap();
        let (large_digest, _) = registry.put_image(None, "multi", large.clone(), None, None, None).await.unwrap();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": small_digest.as_str(), "size": small.len() },
                { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": large_digest.as_str(), "size": large.len() },
            ],
        }))
        .unwrap();
        let (index_digest, _) = registry.put_image(None, "multi", index, None, Some("latest"), None).await.unwrap();
        let large_size = registry.describe_image("multi", &large_digest).await.unwrap().unwrap().size;
        assert!(large_size > 5000);
        assert_eq!(registry.describe_image("multi", &index_digest).await.unwrap().unwrap().size, large_size);
        let (page, more) = registry.describe_images("multi", None, 10, ImageFilter::ALL).await.unwrap();
        assert!(!more);
        let index_detail = page.iter().find(|d| d.record.digest == index_digest.as_str()).unwrap();
        assert_eq!(index_detail.size, large_size, "the page's sizes come from one batched lookup");
        // A child an index lists is archived with its index, never alone.
        assert!(matches!(
            registry.update_image_storage_class("multi", small_digest.as_str(), StorageClass::Archive, 1).await,
            Err(RegistryError::ArchiveOfIndexChild)
        ));
    }

    #[test]
    fn listings_show_active_images_unless_asked() {
        assert_eq!(listing_filter(None, None), ImageFilter { tags: TagFilter::Any, status: StatusFilter::Active });
        assert_eq!(
            listing_filter(Some(TagFilter::Tagged), Some(StatusFilter::Any)),
            ImageFilter { tags: TagFilter::Tagged, status: StatusFilter::Any }
        );
    }

    #[tokio::test]
    async fn one_resolution_of_tags_and_digests() {
        let (_dir, registry) = crate::test_registry().await;
        repository(&registry, "app").await;
        let manifest = image_manifest(&registry, "app", b"layer").await;
        let (digest, _) = registry.put_image(None, "app", manifest, None, Some("v1"), None).await.unwrap();
        let id = |tag, digest| ImageRef { tag, digest };
        assert_eq!(registry.resolve_image("app", id(Some("v1"), None)).await.unwrap(), Ok(digest.clone()));
        assert_eq!(
            registry.resolve_image("app", id(Some("v1"), Some(digest.as_str()))).await.unwrap(),
            Ok(digest.clone())
        );
        assert_eq!(
            registry.resolve_image("app", id(None, None)).await.unwrap(),
            Err(ImageIdFailure::MissingDigestAndTag)
        );
        assert_eq!(registry.resolve_image("app", id(Some("v2"), None)).await.unwrap(), Err(ImageIdFailure::NotFound));
        assert_eq!(
            registry.resolve_image("app", id(Some("bad tag"), None)).await.unwrap(),
            Err(ImageIdFailure::InvalidTag("bad tag".into()))
        );
        assert_eq!(
            registry.resolve_image("app", id(None, Some("sha256:nothex"))).await.unwrap(),
            Err(ImageIdFailure::InvalidDigest("sha256:nothex".into()))
        );
        let other = Digest::from_bytes(Algorithm::Sha256, b"x");
        assert_eq!(
            registry.resolve_image("app", id(Some("v1"), Some(other.as_str()))).await.unwrap(),
            Err(ImageIdFailure::TagDoesNotMatchDigest)
        );
        // A well-formed digest of nothing the repository holds.
        assert_eq!(
            registry.resolve_image("app", id(None, Some(other.as_str()))).await.unwrap(),
            Err(ImageIdFailure::NotFound)
        );
        assert_eq!(registry.resolve_reference("app", ImageRef::of_reference(other.as_str())).await.unwrap(), Ok(other));
    }

    #[tokio::test]
    async fn deleting_a_tag_keeps_the_image_while_other_tags_name_it() {
        let (_dir, registry) = crate::test_registry().await;
        repository(&registry, "app").await;
        let manifest = image_manifest(&registry, "app", b"layer").await;
        let (digest, _) = registry.put_image(None, "app", manifest.clone(), None, Some("v1"), None).await.unwrap();
        registry.put_image(None, "app", manifest, None, Some("v2"), None).await.unwrap();
        let by_tag = |t| ImageRef { tag: Some(t), digest: None };
        let removed = registry.delete_image_by_id("app", by_tag("v1")).await.unwrap().unwrap();
        assert_eq!(removed, DeletedImage { digest: digest.clone(), tags: vec!["v1".into()] });
        assert!(registry.image("app", &digest).await.unwrap().is_some());
        // Its last tag takes the image along.
        let removed = registry.delete_image_by_id("app", by_tag("v2")).await.unwrap().unwrap();
        assert_eq!(removed, DeletedImage { digest: digest.clone(), tags: vec![] });
        assert!(registry.image("app", &digest).await.unwrap().is_none());
        assert_eq!(registry.delete_image_by_id("app", by_tag("v2")).await.unwrap(), Err(ImageIdFailure::NotFound));
    }
}
