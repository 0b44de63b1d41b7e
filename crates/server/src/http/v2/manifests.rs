//! Manifests by tag or digest (GET, HEAD, PUT, DELETE) and the referrers listing.

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
    let reg = &app.registry;
    let head = *method == Method::HEAD;
    match (route, method.clone()) {
        (V2Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            let accept: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
            let m = reg.pull_manifest(name, reference, &accept, &fill_grant(app, access)).await?;
            if !head {
                reg.record_pull(name, &m.digest, access.caller.map(|c| c.arn.as_str()));
            }
            let len = m.content.len();
            let resp = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, &m.media_type)
                .header(header::CONTENT_LENGTH, len)
                .header("docker-content-digest", m.digest.as_str())
                .header(header::ETAG, format!("\"{}\"", m.digest));
            let body = if head { Body::empty() } else { Body::from(m.content) };
            Ok(resp.body(body).expect("valid response"))
        }
        (V2Route::Manifest { name, reference }, Method::PUT) => {
            let Some(bytes) = read_manifest_body(body).await? else {
                return Ok(too_large());
            };
            let tags: Vec<String> = query.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.clone()).collect();
            let by_digest = reference.contains(':');
            let pusher = access.caller.map(|caller| KmsCaller {
                authorizer: &app.authorizer,
                caller,
                env: access.env,
                via_service: None,
            });
            let content_type = header_str(headers, "content-type");
            let put = reg.push_manifest(pusher.as_ref(), name, reference, content_type, bytes, &tags).await?;
            let mut resp = Response::builder()
                .status(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/manifests/{}", put.digest))
                .header("docker-content-digest", put.digest.as_str())
                .header(header::CONTENT_LENGTH, 0);
            if let Some(s) = &put.subject {
                resp = resp.header("oci-subject", s.as_str());
            }
            if by_digest {
                for t in &put.tags {
                    resp = resp.header("oci-tag", t);
                }
            }
            Ok(resp.body(Body::empty()).expect("valid response"))
        }
        (V2Route::Manifest { name, reference }, Method::DELETE) => {
            reg.delete_manifest(name, reference).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (V2Route::Referrers { name, digest }, Method::GET) => {
            let filter = param(query, "artifactType");
            let found = reg.referrers(name, digest, filter).await?;
            let manifests: Vec<serde_json::Value> = found
                .into_iter()
                .map(|m| {
                    let mut d = serde_json::json!({ "mediaType": m.media_type, "digest": m.digest, "size": m.size });
                    if let Some(a) = m.artifact_type {
                        d["artifactType"] = a.into();
                    }
                    if let Some(a) = m.annotations.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok()) {
                        d["annotations"] = a;
                    }
                    d
                })
                .collect();
            let index =
                serde_json::json!({ "schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": manifests });
            let mut resp = json_response(StatusCode::OK, index.to_string());
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media_types::OCI_INDEX));
            if filter.is_some() {
                resp.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
            }
            Ok(resp)
        }
        _ => Err(unsupported()),
    }
}
