//! The replication route (`/berth/replication/v1/<operation>`): where a peer deployment of
//! another region delivers replicas. Only a configured peer's credential opens it (SigV4 for
//! the service `berth-replication` and this region); each call names the source account, the
//! destination registry and repository in its query, and the registry's `receive` services
//! decide the rest. Answers are JSON; a refusal is `{"failureCode", "retry", "message"}`, the
//! failure code being the one the source records for the job.
//!
//! Operations: `POST repository` (make the destination repository ready), `GET blob?digest`
//! (`{"present"}`), `POST upload` (`{"uploadId", "offset"}`), `GET upload?id`, `PATCH
//! upload?id&offset&length` (a part, streamed unsigned), `PUT upload?id&digest` (commit),
//! `PUT manifest?digest&tag…` (`{"droppedTags"}`), and where deletes are propagated
//! `DELETE image?digest` and `DELETE tags?digest&tag…`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use berth_meta::ReplicationPeer;
use berth_oci::Digest;
use berth_oci::manifest::MAX_MANIFEST_BYTES;
use berth_registry::replication::receive::{ReplicaAddress, ReplicaRefused};
use berth_registry::replication::{Failure, failure};
use futures_util::TryStreamExt;
use serde_json::json;

use super::ecr::SignedParts;
use super::{AppState, now_seconds};

fn refusal(status: StatusCode, code: &str, retry: bool, message: &str) -> Response {
    (status, axum::Json(json!({ "failureCode": code, "retry": retry, "message": message }))).into_response()
}

/// A refusal, with the HTTP status that says what kind it is (the source reads the code).
fn refused(r: ReplicaRefused) -> Response {
    let status = match r.failure.code() {
        failure::NOT_AUTHORIZED | failure::REPOSITORY_CREATE_DENIED | failure::PEER_REFUSED => StatusCode::FORBIDDEN,
        failure::DESTINATION_REGISTRY_NOT_FOUND | failure::UPLOAD_UNKNOWN => StatusCode::NOT_FOUND,
        failure::DIGEST_MISMATCH => StatusCode::BAD_REQUEST,
        failure::KMS_KEY_UNAVAILABLE => StatusCode::CONFLICT,
        _ if r.failure.retried() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    refusal(status, r.failure.code(), r.failure.retried(), &r.message)
}

/// A request the protocol does not allow (a missing parameter, an unknown operation).
fn malformed(message: String) -> ReplicaRefused {
    ReplicaRefused { failure: Failure::Final(failure::INTERNAL_ERROR), message }
}

pub async fn handle(
    State(app): State<AppState>,
    Path(op): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A part's bytes are streamed and signed as `UNSIGNED-PAYLOAD` (its blob's digest is
    // checked at the commit); every other body is small and its hash is signed.
    let streamed = op == "upload" && method == Method::PATCH;
    let (small, mut part) = if streamed {
        (bytes::Bytes::new(), Some(body))
    } else {
        match axum::body::to_bytes(body, MAX_MANIFEST_BYTES + 1).await {
            Ok(b) if b.len() <= MAX_MANIFEST_BYTES => (b, None),
            _ => return refused(malformed("the body is larger than any manifest may be".into())),
        }
    };
    let mut signed = SignedParts::of(&headers, &uri, &small);
    if streamed {
        signed.payload_sha256 = "UNSIGNED-PAYLOAD".to_string();
    }
    let peer = match app.registry.authenticate_peer(&signed.request(&method, &uri), now_seconds()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e.message(), "a replication request that no peer signed");
            return refusal(StatusCode::FORBIDDEN, failure::PEER_REFUSED, true, &e.message());
        }
    };
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    match serve(&app, &peer, &op, &method, &query, &headers, small, &mut part).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => refused(r),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    app: &AppState,
    peer: &ReplicationPeer,
    op: &str,
    method: &Method,
    query: &[(String, String)],
    headers: &HeaderMap,
    small: bytes::Bytes,
    part: &mut Option<Body>,
) -> Result<serde_json::Value, ReplicaRefused> {
    let param = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let required = |k: &str| param(k).ok_or_else(|| malformed(format!("{op} needs the {k} parameter")));
    let number = |k: &str| required(k)?.parse::<u64>().map_err(|_| malformed(format!("{k} is not a number of bytes")));
    let digest = || Digest::parse(required("digest")?).map_err(|e| malformed(format!("digest: {e}")));
    let at = ReplicaAddress {
        source_account: required("source")?.to_string(),
        registry_id: required("registry")?.to_string(),
        repository: required("repository")?.to_string(),
    };
    let reg = &app.registry;
    match (op, method.clone()) {
        ("repository", Method::POST) => reg.receive_repository(peer, &at).await.map(|()| json!({})),
        ("blob", Method::GET) => {
            reg.receive_blob_present(peer, &at, &digest()?).await.map(|present| json!({ "present": present }))
        }
        ("upload", Method::POST) => {
            reg.receive_upload_start(peer, &at).await.map(|id| json!({ "uploadId": id, "offset": 0 }))
        }
        ("upload", Method::GET) => {
            let id = required("id")?;
            reg.receive_upload_offset(peer, &at, id).await.map(|offset| json!({ "uploadId": id, "offset": offset }))
        }
        ("upload", Method::PATCH) => {
            let (id, offset, length) = (required("id")?, number("offset")?, number("length")?);
            if offset.checked_add(length).is_none() {
                return Err(malformed("the part ends past any blob's size".into()));
            }
            let body = part.take().ok_or_else(|| malformed("the part has no body".into()))?;
            let stream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
            reg.receive_upload_part(peer, &at, id, offset, length, stream)
                .await
                .map(|offset| json!({ "uploadId": id, "offset": offset }))
        }
        ("upload", Method::PUT) => {
            reg.receive_upload_commit(peer, &at, required("id")?, &digest()?).await.map(|()| json!({}))
        }
        ("manifest", Method::PUT) => {
            let tags: Vec<String> = query.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.clone()).collect();
            let media_type = headers.get("content-type").and_then(|v| v.to_str().ok());
            reg.receive_manifest(peer, &at, &digest()?, media_type, small.to_vec(), &tags)
                .await
                .map(|dropped| json!({ "droppedTags": dropped }))
        }
        ("image", Method::DELETE) => reg.receive_removal(peer, &at, &digest()?, None).await.map(|()| json!({})),
        ("tags", Method::DELETE) => {
            let tags: Vec<String> = query.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.clone()).collect();
            reg.receive_removal(peer, &at, &digest()?, Some(&tags)).await.map(|()| json!({}))
        }
        _ => Err(malformed(format!("{method} {op} is not a replication operation"))),
    }
}
