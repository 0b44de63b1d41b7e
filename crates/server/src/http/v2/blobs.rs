//! Blob reads (HEAD, GET with ranges) and the refused blob DELETE.

use berth_oci::ByteRange;
use berth_registry::{BlobGet, BlobRead};

use super::*;

pub(super) async fn serve(
    app: &AppState,
    route: V2Route<'_>,
    method: &Method,
    headers: &HeaderMap,
    access: Access<'_>,
) -> Result<Response> {
    let reg = &app.registry;
    match (route, method.clone()) {
        (V2Route::Blob { name, digest }, Method::HEAD) => {
            let (digest, size) = match reg.stat_blob(name, digest).await {
                // A cache repository's blob not stored yet: fetched, then answered from storage.
                Err(e)
                    if e.is_not_found()
                        && reg.pull_blob(name, digest, &fill_grant(app, access), true).await?.is_none() =>
                {
                    reg.stat_blob(name, digest).await?
                }
                other => other?,
            };
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, size)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::ACCEPT_RANGES, "bytes")
                .header("docker-content-digest", digest.as_str())
                .header(header::ETAG, format!("\"{digest}\""))
                .body(Body::empty())
                .expect("valid response"))
        }
        (V2Route::Blob { name, digest }, Method::GET) => {
            let located = match reg.locate_blob(name, digest).await {
                Err(e) if e.is_not_found() => {
                    // A cache repository's blob not stored yet: its bytes as they arrive from
                    // the upstream (a range is served from storage once the fetch is done).
                    let whole = header_str(headers, "range").is_some();
                    match reg.pull_blob(name, digest, &fill_grant(app, access), whole).await? {
                        Some(read) => return blob_response(StatusCode::OK, read, None).await,
                        None => reg.locate_blob(name, digest).await?,
                    }
                }
                other => other?,
            };
            let (d, size) = match located {
                BlobGet::Serve { digest, size } => (digest, size),
                // The client reads from storage (its Range header goes along with it).
                BlobGet::Redirect(url) => {
                    return Ok(Response::builder()
                        .status(StatusCode::TEMPORARY_REDIRECT)
                        .header(header::LOCATION, url)
                        .header(header::CONTENT_LENGTH, 0)
                        .body(Body::empty())
                        .expect("valid response"));
                }
            };
            let (status, range) = match parse_range(header_str(headers, "range"), size) {
                RangeRequest::Full => (StatusCode::OK, None),
                RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
                RangeRequest::Unsatisfiable => {
                    return Ok(Response::builder()
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                        .header(header::CONTENT_LENGTH, 0)
                        .body(Body::empty())
                        .expect("valid response"));
                }
            };
            let read = reg.read_blob(name, d.as_str(), range).await?;
            Ok(blob_response(status, read, range).await?)
        }
        // Images are deleted by manifest and GC reclaims their blobs: a blob delete could break
        // an image that still references the blob, so it is refused as distribution refuses
        // deletes it does not allow.
        (V2Route::Blob { .. }, Method::DELETE) => Err(RegistryError::Unsupported(
            "blobs are not deleted one by one: delete the image's manifest, and garbage collection reclaims its blobs"
                .into(),
        )),
        _ => Err(unsupported()),
    }
}

/// A blob's bytes (all of them, or `range`) as the response to a GET.
async fn blob_response(status: StatusCode, read: BlobRead, range: Option<ByteRange>) -> Result<Response> {
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("docker-content-digest", read.digest.as_str())
        .header(header::ETAG, format!("\"{}\"", read.digest));
    resp = match range {
        Some(r) => resp
            .header(header::CONTENT_LENGTH, r.len())
            .header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end, read.size)),
        None => resp.header(header::CONTENT_LENGTH, read.size),
    };
    let len = range.map_or(read.size, |r| r.len());
    let body = if len <= SMALL_READ {
        // Read first, so the head and the bytes leave in one write: a small response
        // sent as two would wait on the client's delayed ACK.
        let bytes: Vec<bytes::Bytes> = read
            .body
            .try_collect()
            .await
            .map_err(|e| RegistryError::Internal(format!("reading blob {}: {e}", read.digest)))?;
        Body::from(bytes.concat())
    } else {
        Body::from_stream(read.body)
    };
    Ok(resp.body(body).expect("valid response"))
}
