//! The registry's errors as the ECR API names them: the exception (`__type`) and AWS's wording.
//! One exhaustive match; an operation that names a refusal differently (a layer upload's
//! digest, a scan's image id) matches the registry's variant, never a protocol code.

use berth_registry::RegistryError;
use berth_registry::repositories::repository_not_found;

use super::EcrError;

/// The exception for a registry refusal, worded for the registry `registry_id`.
pub fn exception(e: RegistryError, registry_id: &str) -> EcrError {
    use RegistryError::*;
    let message = e.to_string();
    let (kind, message) = match e {
        NameInvalid(m) | DigestInvalid(m) | InvalidParameter(m) | Unsupported(m) => ("InvalidParameterException", m),
        TagInvalid(m) | ManifestInvalid(m) => ("InvalidParameterException", format!("Invalid parameter: {m}")),
        InvalidSetting(m) => ("ValidationException", m),
        Denied(m) => ("AccessDeniedException", m),
        RepositoryNotFound { name } => ("RepositoryNotFoundException", repository_not_found(&name, registry_id)),
        RepositoryAlreadyExists { name } => (
            "RepositoryAlreadyExistsException",
            format!("The repository with name '{name}' already exists in the registry with id '{registry_id}'"),
        ),
        RepositoryNotEmpty { name } => (
            "RepositoryNotEmptyException",
            format!(
                "The repository with name '{name}' in registry with id '{registry_id}' cannot be deleted because it still contains images"
            ),
        ),
        TooManyTags => ("TooManyTagsException", message),
        InvalidResourceTag(m) => ("InvalidTagParameterException", m),
        PullThroughRuleNotFound { .. } => ("PullThroughCacheRuleNotFoundException", message),
        PullThroughRuleAlreadyExists { .. } => ("PullThroughCacheRuleAlreadyExistsException", message),
        PullThroughRuleLimit => ("LimitExceededException", message),
        PullTimeExclusionExists { .. } => ("ExclusionAlreadyExistsException", message),
        PullTimeExclusionNotFound { .. } => ("ExclusionNotFoundException", message),
        PullTimeExclusionLimit => ("LimitExceededException", message),
        // Only the public host's anonymous pulls meet this.
        AnonymousAllowanceExceeded { .. } => ("LimitExceededException", message),
        SigningConfigurationNotFound => ("SigningConfigurationNotFoundException", message),
        UnsupportedUpstream(m) => ("UnsupportedUpstreamRegistryException", m),
        SecretNotFound(m) => ("SecretNotFoundException", m),
        SecretInaccessible(m) => ("UnableToAccessSecretException", m),
        SecretUndecryptable(m) => ("UnableToDecryptSecretValueException", m),
        Kms(e) => return EcrError::Kms { kms_error: e.code(), message },
        Upstream { message, .. } => ("UnableToGetUpstreamImageException", message),
        TemplateNotFound { .. } => ("TemplateNotFoundException", message),
        TemplateAlreadyExists { .. } => ("TemplateAlreadyExistsException", message),
        RepositoryPolicyNotFound { name } => (
            "RepositoryPolicyNotFoundException",
            format!(
                "Repository policy does not exist for the repository with name '{name}' in the registry with id '{registry_id}'"
            ),
        ),
        RegistryPolicyNotFound => (
            "RegistryPolicyNotFoundException",
            format!("Registry policy does not exist in the registry with id '{registry_id}'"),
        ),
        LifecyclePolicyNotFound { name } => (
            "LifecyclePolicyNotFoundException",
            format!(
                "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{registry_id}'"
            ),
        ),
        LifecyclePreviewNotFound { name } => (
            "LifecyclePolicyPreviewNotFoundException",
            format!(
                "There is no lifecycle policy preview for the repository with name '{name}' in the registry with id '{registry_id}'"
            ),
        ),
        BlobNotFound { digest } => (
            "LayersNotFoundException",
            format!("The layer '{digest}' does not exist in the registry with id '{registry_id}'"),
        ),
        UploadNotFound { id } => (
            "UploadNotFoundException",
            format!("The upload with id '{id}' does not exist in the registry with id '{registry_id}'"),
        ),
        UploadOutOfOrder { start, size } => {
            let mut m = format!("The part starts at byte {start} but the upload has {size} bytes");
            if let Some(last) = size.checked_sub(1) {
                m = format!("{m} (last valid byte received: {last})");
            }
            ("InvalidLayerPartException", m)
        }
        ChunkRangeInvalid(m) => ("InvalidLayerPartException", format!("The part is invalid: {m}")),
        SizeMismatch { .. } => ("InvalidLayerPartException", message),
        UploadDigestMismatch { .. } => ("InvalidLayerException", message),
        LayerPartTooSmall { .. } => ("LayerPartTooSmallException", message),
        EmptyUpload => ("EmptyUploadException", message),
        ManifestNotFound { reference } => (
            "ImageNotFoundException",
            format!("The image '{reference}' does not exist in the registry with id '{registry_id}'"),
        ),
        ManifestArchived { .. } | ImageArchived { .. } => ("ImageArchivedException", message),
        ManifestNotAccepted { .. } | ImageNotScannable { .. } => ("UnsupportedImageTypeException", message),
        ManifestDigestMismatch { expected, actual } => (
            "ImageDigestDoesNotMatchException",
            format!(
                "Invalid parameter at 'imageDigest': the digest {expected} does not match the manifest's digest {actual}"
            ),
        ),
        TagImmutable { .. } => ("ImageTagAlreadyExistsException", message),
        ReferencesMissing { repository, manifests, .. } if !manifests.is_empty() => {
            let manifests: Vec<String> = manifests.iter().map(|d| d.to_string()).collect();
            (
                "ReferencedImagesNotFoundException",
                format!(
                    "Manifests with digests '{manifests:?}' referenced by the image do not exist in the repository with name '{repository}'"
                ),
            )
        }
        ReferencesMissing { repository, blobs, .. } => {
            let blobs: Vec<String> = blobs.iter().map(|d| d.to_string()).collect();
            (
                "LayersNotFoundException",
                format!(
                    "Layers with digests '{blobs:?}' required for pushing image into repository with name '{repository}' in the registry with id '{registry_id}' do not exist"
                ),
            )
        }
        ReferencedByIndex { .. } => ("InvalidParameterException", message),
        ImageAlreadyExists { repository, digest, tag } => (
            "ImageAlreadyExistsException",
            format!(
                "Image with digest '{digest}' and tag '{}' already exists in the repository with name '{repository}' in registry with id '{registry_id}'",
                tag.as_deref().unwrap_or("null")
            ),
        ),
        PullBlocked { .. } | PullUnverified { .. } => ("AccessDeniedException", message),
        ArchiveOfIndexChild => ("ImageStorageClassUpdateNotSupportedException", message),
        ScanNotFound { digest } => (
            "ScanNotFoundException",
            format!("Image scan does not exist for the image '{digest}' in the registry with id '{registry_id}'"),
        ),
        // Already logged, once a minute.
        InsufficientStorage => ("ServerException", message),
        UploadInterrupted(_) | Internal(_) | Unavailable(_) => return EcrError::server(message),
    };
    EcrError::new(kind, message)
}
