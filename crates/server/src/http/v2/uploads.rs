//! Upload sessions: start (session, monolithic, mount), chunks, status, completion, cancel.

use super::*;

pub(super) async fn serve(
    app: &AppState,
    route: V2Route<'_>,
    method: &Method,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
    access: Access<'_>,
) -> Result<Response> {
    let upload = access.upload;
    let reg = &app.registry;
    match (route, method.clone()) {
        (V2Route::UploadStart { name }, Method::POST) => {
            match upload {
                UploadStart::Mount { from: Some(from) } => {
                    let mount = param(query, "mount").unwrap_or_default();
                    let source_named =
                        param(query, "from").is_some_and(|f| berth_oci::validate_repository_name(f).is_ok());
                    if source_named
                        && may_read_mount_source(app, access, from).await?
                        && let Some(d) = reg.mount_blob(name, mount, from).await?
                    {
                        return Ok(blob_created(name, &d));
                    }
                }
                UploadStart::Mount { from: None } | UploadStart::Session => {}
                UploadStart::Monolithic => {
                    let digest = param(query, "digest").unwrap_or_default();
                    let done = reg.upload_blob(name, digest, body_stream(body)).await?;
                    return Ok(blob_created(name, &done.digest));
                }
            }
            // A mount that cannot be done is a new, empty session; its body (if any) is ignored.
            let id = reg.start_upload(name, param(query, "digest-algorithm")).await?;
            Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
        }
        (V2Route::Upload { name, id }, Method::PATCH) => {
            let range = match header_str(headers, "content-range") {
                Some(h) => Some(
                    parse_content_range(h)
                        .ok_or_else(|| RegistryError::ChunkRangeInvalid(format!("invalid Content-Range {h:?}")))?,
                ),
                None => None,
            };
            let offset = reg.append_upload(name, id, range, content_length(headers), body_stream(body)).await?;
            Ok(upload_response(StatusCode::ACCEPTED, name, id, offset))
        }
        (V2Route::Upload { name, id }, Method::PUT) => {
            let digest = param(query, "digest")
                .ok_or_else(|| RegistryError::DigestInvalid("the digest query parameter is required".into()))?;
            let done = reg.complete_upload(name, id, digest, Some(body_stream(body)), content_length(headers)).await?;
            Ok(blob_created(name, &done.digest))
        }
        (V2Route::Upload { name, id }, Method::GET) => {
            let offset = reg.upload_status(name, id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, name, id, offset))
        }
        (V2Route::Upload { name, id }, Method::DELETE) => {
            reg.cancel_upload(name, id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(unsupported()),
    }
}
