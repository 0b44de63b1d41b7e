//! The registry's errors as the distribution spec answers them: code, status, message and
//! detail. One exhaustive match; nothing else in `/v2/` words an error of the registry's.

use axum::http::StatusCode;
use axum::response::Response;
use berth_oci::ErrorCode;
use berth_registry::RegistryError;
use berth_registry::pull_through::UpstreamFailure;
use berth_registry::repositories::repository_not_found;
use serde_json::{Value, json};

use super::super::accounts::Namespace;

/// The answer to a failed `/v2/` request, with the account's repository keys turned back into
/// names (in the message and the detail).
pub fn error_response(err: RegistryError, ns: &Namespace) -> Response {
    use RegistryError::*;
    let message = err.to_string();
    let (code, detail): (ErrorCode, Option<Value>) = match &err {
        NameInvalid(_) => (ErrorCode::NameInvalid, None),
        DigestInvalid(_) | ManifestDigestMismatch { .. } => (ErrorCode::DigestInvalid, None),
        TagInvalid(_) => (ErrorCode::TagInvalid, None),
        Denied(_) => (ErrorCode::Denied, None),
        // The message names the key (its ARN) and what KMS said.
        Kms(e) => (ErrorCode::Denied, Some(json!({ "kmsError": e.code() }))),
        // A pull-through fill the upstream failed: refused, rate-limited, or unavailable.
        Upstream { failure, .. } => match failure {
            UpstreamFailure::AccessDenied => (ErrorCode::Denied, Some(json!({ "upstream": failure.code() }))),
            UpstreamFailure::TooManyRequests => {
                (ErrorCode::TooManyRequests, Some(json!({ "upstream": failure.code() })))
            }
            UpstreamFailure::Unavailable => {
                let mut r =
                    super::error_response(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", &ns.unkey(&message), None);
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
                return r;
            }
        },
        Unsupported(_) => (ErrorCode::Unsupported, None),
        RepositoryNotFound { name } => {
            let message = repository_not_found(&ns.unkey(name), &ns.account);
            return super::error_response(StatusCode::NOT_FOUND, ErrorCode::NameUnknown.as_str(), &message, None);
        }
        BlobNotFound { digest } => (ErrorCode::BlobUnknown, Some(json!({ "digest": digest.as_str() }))),
        UploadNotFound { .. } => (ErrorCode::BlobUploadUnknown, None),
        UploadInterrupted(_) | LayerPartTooSmall { .. } | EmptyUpload => (ErrorCode::BlobUploadInvalid, None),
        UploadOutOfOrder { size, .. } => (ErrorCode::RangeInvalid, Some(json!({ "offset": size }))),
        ChunkRangeInvalid(_) => (ErrorCode::RangeInvalid, None),
        SizeMismatch { .. } => (ErrorCode::SizeInvalid, None),
        UploadDigestMismatch { expected, actual } => {
            (ErrorCode::DigestInvalid, Some(json!({ "expected": expected.as_str(), "actual": actual.as_str() })))
        }
        ManifestNotFound { reference } => (ErrorCode::ManifestUnknown, Some(json!({ "reference": reference }))),
        ManifestArchived { reference, .. } => {
            (ErrorCode::ManifestUnknown, Some(json!({ "reference": reference, "imageStatus": "ARCHIVED" })))
        }
        ManifestNotAccepted { reference, media_type } => {
            (ErrorCode::ManifestUnknown, Some(json!({ "reference": reference, "mediaType": media_type })))
        }
        ManifestInvalid(_) => (ErrorCode::ManifestInvalid, None),
        TagImmutable { tag, .. } => (ErrorCode::TagInvalid, Some(json!({ "tag": tag, "immutable": true }))),
        ReferencesMissing { blobs, manifests, .. } => {
            let list = |ds: &[berth_oci::Digest]| ds.iter().map(|d| d.to_string()).collect::<Vec<_>>();
            let missing: Vec<String> = list(blobs).into_iter().chain(list(manifests)).collect();
            let detail = json!({ "missing": missing, "blobs": list(blobs), "manifests": list(manifests) });
            (ErrorCode::ManifestBlobUnknown, Some(detail))
        }
        ReferencedByIndex { parents, .. } => (ErrorCode::Denied, Some(json!({ "referencedBy": parents }))),
        PullUnverified { digest, trusted, .. } => {
            (ErrorCode::Denied, Some(json!({ "digest": digest.as_str(), "trustedKeys": trusted })))
        }
        AnonymousAllowanceExceeded { retry_after_seconds, .. } => {
            let mut r = super::error_response(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests.as_str(),
                &message,
                None,
            );
            if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_seconds.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            return r;
        }
        PullBlocked { digest, threshold, .. } => {
            (ErrorCode::Denied, Some(json!({ "digest": digest.as_str(), "blockSeverity": threshold })))
        }
        // What only the ECR API asks for: `/v2/` has no request that meets these.
        InvalidParameter(_)
        | InvalidSetting(_)
        | RepositoryAlreadyExists { .. }
        | RepositoryNotEmpty { .. }
        | TooManyTags
        | InvalidResourceTag(_)
        | TemplateNotFound { .. }
        | PullThroughRuleNotFound { .. }
        | PullThroughRuleAlreadyExists { .. }
        | PullThroughRuleLimit
        | PullTimeExclusionExists { .. }
        | PullTimeExclusionNotFound { .. }
        | PullTimeExclusionLimit
        | SigningConfigurationNotFound
        | UnsupportedUpstream(_)
        | SecretNotFound(_)
        | SecretInaccessible(_)
        | SecretUndecryptable(_)
        | TemplateAlreadyExists { .. }
        | RepositoryPolicyNotFound { .. }
        | RegistryPolicyNotFound
        | LifecyclePolicyNotFound { .. }
        | LifecyclePreviewNotFound { .. }
        | ImageAlreadyExists { .. }
        | ImageArchived { .. }
        | ImageNotScannable { .. }
        | ArchiveOfIndexChild
        | ScanNotFound { .. } => (ErrorCode::Unsupported, None),
        // The server's fault, not the request's: 507, and the client may retry later.
        InsufficientStorage => {
            return super::error_response(StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN", "insufficient storage", None);
        }
        // Distribution's code for 503; clients retry after the pause it names.
        Unavailable(m) => {
            tracing::warn!(error = %m, "the metadata database is unavailable");
            let mut r = super::error_response(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", &message, None);
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
            return r;
        }
        Internal(m) => {
            tracing::error!(error = %m, "internal error");
            return super::error_response(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal server error", None);
        }
    };
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let detail = detail.map(|d| if ns.is_default() { d } else { unkey_value(d, ns) });
    super::error_response(status, code.as_str(), &ns.unkey(&message), detail)
}

fn unkey_value(d: Value, ns: &Namespace) -> Value {
    serde_json::from_str(&ns.unkey(&d.to_string())).unwrap_or(d)
}
