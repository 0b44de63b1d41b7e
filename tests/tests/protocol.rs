//! The OCI distribution API at the protocol level, against the real binary: every status and
//! error code, chunked uploads in and out of order, mounts, ranges, pagination, referrers.

use berth_e2e::*;
use reqwest::{Response, StatusCode};
use serde_json::Value;

async fn error_code(r: Response) -> String {
    let body: Value = r.json().await.expect("error body is JSON");
    body["errors"][0]["code"].as_str().expect("errors[0].code").to_string()
}

fn header(r: &Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn ping_answers_with_the_api_version() {
    let b = Berth::start();
    let r = b.client().get(b.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-distribution-api-version"), "registry/2.0");
    let r = b.client().get(b.url("/v2")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn monolithic_upload_then_head_get_delete() {
    let b = Berth::start();
    let c = b.client();
    let data = pseudo_random(1, 100_000);
    let d = push_blob(&c, &b, "team/app", &data).await;
    let r = c.head(b.url(&format!("/v2/team/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "100000");
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    let r = c.get(b.url(&format!("/v2/team/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), data);
    // Blobs are served only from repositories they are linked to.
    let r = c.get(b.url(&format!("/v2/other/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    push_blob(&c, &b, "other", b"x").await;
    let r = c.get(b.url(&format!("/v2/other/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    // Blobs are not deleted one by one (images are deleted by manifest, GC reclaims blobs):
    // 405 UNSUPPORTED, and the blob is still served.
    let r = c.delete(b.url(&format!("/v2/team/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    let r = c.head(b.url(&format!("/v2/team/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn monolithic_upload_with_wrong_digest_is_refused_and_invisible() {
    let b = Berth::start();
    let c = b.client();
    let wrong = sha256(b"something else");
    let r = c.post(b.url(&format!("/v2/a/blobs/uploads/?digest={wrong}"))).body("payload").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    for d in [wrong, sha256(b"payload")] {
        let r = c.head(b.url(&format!("/v2/a/blobs/{d}"))).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = c.post(b.url("/v2/a/blobs/uploads/?digest=sha256:1234")).body("x").send().await.unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = c.get(b.url("/v2/a/blobs/sha256:zz")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn chunked_upload_in_order_out_of_order_status_and_final_chunk() {
    let b = Berth::start();
    let c = b.client();
    let data = pseudo_random(2, 30_000);
    let r = c.post(b.url("/v2/team/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let loc = header(&r, "location");
    let uuid = header(&r, "docker-upload-uuid");
    assert!(loc.ends_with(&uuid), "{loc}");
    assert_eq!(header(&r, "range"), "0-0");
    let url = b.url(&loc);

    let r = c.patch(&url).header("content-range", "0-9999").body(data[..10_000].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-9999");
    assert_eq!(header(&r, "docker-upload-uuid"), uuid);
    // A chunk that does not start at the end of what was received: 416, nothing changes.
    let r = c.patch(&url).header("content-range", "20000-29999").body(data[20_000..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r =
        c.patch(&url).header("content-range", "5000-14999").body(data[5_000..15_000].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-9999");
    // A chunk without Content-Range (streamed) appends.
    let r = c.patch(&url).body(data[10_000..20_000].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-19999");
    // The final PUT carries the last chunk.
    let d = sha256(&data);
    let r = c.put(format!("{url}?digest={d}")).body(data[20_000..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/team/app/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    let got = c.get(b.url(&format!("/v2/team/app/blobs/{d}"))).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(got, data);
    // The session is gone.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_with_wrong_digest_is_refused() {
    let b = Berth::start();
    let c = b.client();
    let r = c.post(b.url("/v2/a/blobs/uploads/")).send().await.unwrap();
    let url = b.url(&header(&r, "location"));
    c.patch(&url).body("abc").send().await.unwrap();
    let r = c.put(format!("{url}?digest={}", sha256(b"abd"))).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = c.head(b.url(&format!("/v2/a/blobs/{}", sha256(b"abc")))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // PUT without digest
    let r = c.post(b.url("/v2/a/blobs/uploads/")).send().await.unwrap();
    let url = b.url(&header(&r, "location"));
    let r = c.put(&url).send().await.unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn empty_blob_and_sha512_uploads() {
    let b = Berth::start();
    let c = b.client();
    // An empty body, completed in one PUT.
    let r = c.post(b.url("/v2/a/blobs/uploads/")).send().await.unwrap();
    let url = b.url(&header(&r, "location"));
    let empty = sha256(b"");
    let r = c.put(format!("{url}?digest={empty}")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = c.get(b.url(&format!("/v2/a/blobs/{empty}"))).send().await.unwrap();
    assert_eq!(header(&r, "content-length"), "0");

    // sha512, chunked, started with ?digest-algorithm=sha512.
    use sha2::Digest as _;
    let data = pseudo_random(3, 5000);
    let d512 = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)));
    let r = c.post(b.url("/v2/a/blobs/uploads/?digest-algorithm=sha512")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let url = b.url(&header(&r, "location"));
    c.patch(&url).body(data[..2000].to_vec()).send().await.unwrap();
    let r = c.put(format!("{url}?digest={d512}")).body(data[2000..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let r = c.get(b.url(&format!("/v2/a/blobs/{d512}"))).send().await.unwrap();
    assert_eq!(header(&r, "docker-content-digest"), d512);
    assert_eq!(r.bytes().await.unwrap(), data);
    // sha512, monolithic.
    let small = b"sha512 monolithic";
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(small)));
    let r = c.post(b.url(&format!("/v2/b/blobs/uploads/?digest={d}"))).body(small.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // An algorithm the registry does not support.
    let r = c.post(b.url("/v2/a/blobs/uploads/?digest-algorithm=md5")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn cancel_and_unknown_uploads() {
    let b = Berth::start();
    let c = b.client();
    let r = c.post(b.url("/v2/a/blobs/uploads/")).send().await.unwrap();
    let url = b.url(&header(&r, "location"));
    c.patch(&url).body("partial").send().await.unwrap();
    let r = c.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    for r in [c.get(&url).send().await.unwrap(), c.patch(&url).body("x").send().await.unwrap()] {
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    }
    let r = c.get(b.url("/v2/a/blobs/uploads/no-such-upload")).send().await.unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // An upload belongs to the repository it was started in.
    let r = c.post(b.url("/v2/a/blobs/uploads/")).send().await.unwrap();
    let id = header(&r, "docker-upload-uuid");
    push_blob(&c, &b, "b", b"x").await;
    let r = c.get(b.url(&format!("/v2/b/blobs/uploads/{id}"))).send().await.unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn cross_repository_mount() {
    let b = Berth::start();
    let c = b.client();
    let d = push_blob(&c, &b, "src/app", b"shared layer").await;
    // Off by default, as in ECR: the mount request becomes an ordinary upload session.
    let r = c.post(b.url(&format!("/v2/dst/app/blobs/uploads/?mount={d}&from=src/app"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let (status, _) = b.ecr("PutAccountSetting", serde_json::json!({"name": "BLOB_MOUNTING", "value": "ENABLED"}));
    assert_eq!(status, 200);
    let r = c.post(b.url(&format!("/v2/dst/app/blobs/uploads/?mount={d}&from=src/app"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/dst/app/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = c.get(b.url(&format!("/v2/dst/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"shared layer"[..]);
    // From a repository that does not hold the blob: a normal upload session instead.
    let r = c.post(b.url(&format!("/v2/third/blobs/uploads/?mount={d}&from=nothing-here"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert!(header(&r, "location").starts_with("/v2/third/blobs/uploads/"));
    let r = c.head(b.url(&format!("/v2/third/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn range_reads_in_every_form() {
    let b = Berth::start();
    let c = b.client();
    let data = pseudo_random(4, 2000);
    let d = push_blob(&c, &b, "a", &data).await;
    let url = b.url(&format!("/v2/a/blobs/{d}"));
    for (range, start, end) in [
        ("bytes=500-1499", 500, 1499),
        ("bytes=500-", 500, 1999),
        ("bytes=-500", 1500, 1999),
        ("bytes=0-999999", 0, 1999),
    ] {
        let r = c.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(header(&r, "content-range"), format!("bytes {start}-{end}/2000"));
        assert_eq!(header(&r, "content-length"), (end - start + 1).to_string());
        assert_eq!(r.bytes().await.unwrap(), data[start..=end], "{range}");
    }
    for range in ["bytes=2000-", "bytes=5000-6000", "bytes=-0"] {
        let r = c.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header(&r, "content-range"), "bytes */2000");
    }
}

#[tokio::test]
async fn manifests_push_pull_validate_delete() {
    let b = Berth::start();
    let c = b.client();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = pseudo_random(5, 4096);
    let (cd, ld) = (sha256(config), sha256(&layer));
    let manifest = image_manifest((&cd, config.len()), &[(&ld, layer.len())]);
    let md = sha256(&manifest);
    let put = |reference: String, body: Vec<u8>, ct: &'static str| {
        c.put(b.url(&format!("/v2/team/app/manifests/{reference}"))).header("content-type", ct).body(body).send()
    };
    // Blobs missing: refused with MANIFEST_BLOB_UNKNOWN, nothing stored.
    let r = put("v1".into(), manifest.clone(), OCI_MANIFEST).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    push_blob(&c, &b, "team/app", config).await;
    let r = put("v1".into(), manifest.clone(), OCI_MANIFEST).await.unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    push_blob(&c, &b, "team/app", &layer).await;

    let r = put("v1".into(), manifest.clone(), OCI_MANIFEST).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), md);
    assert_eq!(header(&r, "location"), format!("/v2/team/app/manifests/{md}"));
    for reference in ["v1".to_string(), md.clone()] {
        let r = c
            .get(b.url(&format!("/v2/team/app/manifests/{reference}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), md);
        assert_eq!(r.bytes().await.unwrap(), manifest, "served byte for byte");
        let r = c.head(b.url(&format!("/v2/team/app/manifests/{reference}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), manifest.len().to_string());
    }
    // A client that names only other manifest types is not sent this one.
    let r = c
        .get(b.url("/v2/team/app/manifests/v1"))
        .header("accept", "application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = c.get(b.url("/v2/team/app/manifests/v1")).header("accept", "*/*").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The same bytes with other whitespace are another manifest with another digest.
    let mut spaced = manifest.clone();
    spaced.push(b'\n');
    let r = put(sha256(&spaced), spaced.clone(), OCI_MANIFEST).await.unwrap();
    assert_eq!(r.status(), 201);
    // By digest, with a digest that is not the body's.
    let r = put(md.clone(), spaced.clone(), OCI_MANIFEST).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    // Malformed manifests, media type mismatches, bad tags, oversized bodies.
    let r = put("bad".into(), b"{not json".to_vec(), OCI_MANIFEST).await.unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = put("bad".into(), manifest.clone(), "application/vnd.docker.distribution.manifest.v2+json").await.unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = put(".bad".into(), manifest.clone(), OCI_MANIFEST).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "TAG_INVALID");
    let r = put("big".into(), vec![b' '; 4 * 1024 * 1024 + 1], OCI_MANIFEST).await.unwrap();
    assert_eq!(r.status(), 413);

    // Unknown manifests and repositories.
    let r = c.get(b.url("/v2/team/app/manifests/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = c.get(b.url("/v2/no/such/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");

    // Deleting a tag keeps the manifest; deleting by digest removes it and its tags.
    let r = put("v2".into(), manifest.clone(), OCI_MANIFEST).await.unwrap();
    assert_eq!(r.status(), 201);
    let r = c.delete(b.url("/v2/team/app/manifests/v2")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(c.get(b.url("/v2/team/app/manifests/v2")).send().await.unwrap().status(), 404);
    assert_eq!(c.get(b.url(&format!("/v2/team/app/manifests/{md}"))).send().await.unwrap().status(), 200);
    let r = c.delete(b.url(&format!("/v2/team/app/manifests/{md}"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = c.get(b.url("/v2/team/app/manifests/v1")).send().await.unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = c.delete(b.url(&format!("/v2/team/app/manifests/{md}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn index_requires_its_children() {
    let b = Berth::start();
    let c = b.client();
    let (child, child_bytes) = {
        let (d, m) = push_image(&c, &b, "multi", "amd64", 7).await;
        (d, m)
    };
    let index = |children: &[(&str, usize)]| {
        let m: Vec<_> = children
            .iter()
            .map(|(d, s)| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": s, "platform": {"architecture": "amd64", "os": "linux"}}))
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": m})).unwrap()
    };
    let missing = sha256(b"not pushed");
    let r = c
        .put(b.url("/v2/multi/manifests/latest"))
        .header("content-type", OCI_INDEX)
        .body(index(&[(&child, child_bytes.len()), (&missing, 10)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    let body = index(&[(&child, child_bytes.len())]);
    let r = c
        .put(b.url("/v2/multi/manifests/latest"))
        .header("content-type", OCI_INDEX)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c.get(b.url("/v2/multi/manifests/latest")).send().await.unwrap();
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(r.bytes().await.unwrap(), body);

    // A child the index lists cannot be deleted on its own (BatchDeleteImage refuses it too).
    let r = c.delete(b.url(&format!("/v2/multi/manifests/{child}"))).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    assert_eq!(v["errors"][0]["detail"]["referencedBy"], serde_json::json!([sha256(&body)]));
    assert_eq!(c.get(b.url(&format!("/v2/multi/manifests/{child}"))).send().await.unwrap().status(), 200);
    // Once the index is gone, it can.
    let r = c.delete(b.url(&format!("/v2/multi/manifests/{}", sha256(&body)))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = c.delete(b.url(&format!("/v2/multi/manifests/{child}"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn references_that_cannot_exist_are_unknown_not_invalid() {
    let b = Berth::start();
    let c = b.client();
    push_image(&c, &b, "conf/app", "v1", 8).await;
    // The OCI conformance suite's case: neither a tag nor a digest. 404 on GET and HEAD.
    for reference in [".INVALID_MANIFEST_NAME", "sha256:zzz", "a:b:c", "-tag"] {
        let url = b.url(&format!("/v2/conf/app/manifests/{reference}"));
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "{reference}");
        assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN", "{reference}");
        assert_eq!(c.head(&url).send().await.unwrap().status(), 404, "{reference}");
    }
    // In a repository that does not exist, the repository is what is unknown.
    let r = c.get(b.url("/v2/no/such/manifests/.INVALID_MANIFEST_NAME")).send().await.unwrap();
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn a_chunks_range_must_match_its_body_exactly() {
    let b = Berth::start();
    let c = b.client();
    let r = c.post(b.url("/v2/ranges/blobs/uploads/")).send().await.unwrap();
    let url = b.url(&header(&r, "location"));
    // The range's length does not fit a u64 (an unchecked end - start + 1 wrapped to 0).
    let r = c.patch(&url).header("content-range", "0-18446744073709551615").body(Vec::new()).send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(error_code(r).await, "RANGE_INVALID");
    // A length that differs from the body's, declared (Content-Length) or streamed (chunked).
    let r = c.patch(&url).header("content-range", "0-9").body(vec![1u8; 5]).send().await.unwrap();
    assert_eq!(r.status(), 416);
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(vec![1u8; 5])]);
    let r = c.patch(&url).header("content-range", "0-9").body(reqwest::Body::wrap_stream(stream)).send().await.unwrap();
    assert_eq!(r.status(), 416);
    // A streamed body longer than its range too.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(vec![1u8; 15])]);
    let r = c.patch(&url).header("content-range", "0-9").body(reqwest::Body::wrap_stream(stream)).send().await.unwrap();
    assert_eq!(r.status(), 416);
    // Refused chunks left nothing behind: the session is still empty and goes on from 0.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(header(&r, "range"), "0-0");
    let data = vec![7u8; 10];
    let r = c.patch(&url).header("content-range", "0-9").body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-9");
    let r = c.put(format!("{url}?digest={}", sha256(&data))).send().await.unwrap();
    assert_eq!(r.status(), 201, "the digest covers exactly the accepted bytes");
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link_headers() {
    let b = Berth::start();
    let c = b.client();
    for (i, tag) in ["e", "a", "d", "b", "c"].iter().enumerate() {
        push_image(&c, &b, "team/app/api", tag, i as u64).await;
    }
    let r = c.get(b.url("/v2/team/app/api/tags/list")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "team/app/api");
    assert_eq!(v["tags"], serde_json::json!(["a", "b", "c", "d", "e"]));

    let mut url = b.url("/v2/team/app/api/tags/list?n=2");
    let mut seen = Vec::new();
    loop {
        let r = c.get(&url).send().await.unwrap();
        let link = header(&r, "link");
        let v: Value = r.json().await.unwrap();
        seen.extend(v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()));
        if link.is_empty() {
            break;
        }
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        url = b.url(link.trim_start_matches('<').split('>').next().unwrap());
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let r = c.get(b.url("/v2/team/app/api/tags/list?n=2&last=b")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["c", "d"]));

    for repo in ["z", "m", "team/app/api2"] {
        push_blob(&c, &b, repo, b"x").await;
    }
    let r = c.get(b.url("/v2/_catalog?n=2")).send().await.unwrap();
    assert!(header(&r, "link").contains("last=team%2Fapp%2Fapi"), "{}", header(&r, "link"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["m", "team/app/api"]));
    let r = c.get(b.url("/v2/_catalog?n=2&last=team/app/api")).send().await.unwrap();
    assert!(header(&r, "link").is_empty());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["team/app/api2", "z"]));

    let r = c.get(b.url("/v2/missing/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn names_and_methods_are_checked() {
    let b = Berth::start();
    let c = b.client();
    for path in ["/v2/UPPER/tags/list", "/v2/a//b/manifests/x", "/v2/-a/blobs/uploads/"] {
        let r = c.get(b.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(error_code(r).await, "NAME_INVALID", "{path}");
    }
    let r = c.post(b.url("/v2/a/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
}

#[tokio::test]
async fn referrers_and_tagging_by_digest() {
    let b = Berth::start();
    let c = b.client();
    let (subject, subject_bytes) = push_image(&c, &b, "app", "v1", 9).await;
    let empty = push_blob(&c, &b, "app", b"{}").await;
    let sbom = push_blob(&c, &b, "app", b"sbom contents").await;
    let artifact = |artifact_type: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "text/plain", "digest": sbom, "size": 13}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()},
            "annotations": {"org.example.kind": artifact_type},
        }))
        .unwrap()
    };
    let mut pushed = Vec::new();
    for t in ["application/vnd.example.sbom", "application/vnd.example.sig"] {
        let body = artifact(t);
        let d = sha256(&body);
        let r = c
            .put(b.url(&format!("/v2/app/manifests/{d}")))
            .header("content-type", OCI_MANIFEST)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "oci-subject"), subject);
        pushed.push(d);
    }
    let r = c.get(b.url(&format!("/v2/app/referrers/{subject}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert!(header(&r, "oci-filters-applied").is_empty());
    let v: Value = r.json().await.unwrap();
    let ms = v["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    for m in ms {
        assert!(pushed.contains(&m["digest"].as_str().unwrap().to_string()));
        assert_eq!(m["annotations"]["org.example.kind"], m["artifactType"]);
    }
    let r = c
        .get(b.url(&format!("/v2/app/referrers/{subject}?artifactType=application/vnd.example.sig")))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], pushed[1].as_str());
    // No referrers: an empty index, not an error.
    let r = c.get(b.url(&format!("/v2/app/referrers/{}", sha256(b"none")))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));

    // PUT by digest with ?tag= sets tags and answers OCI-Tag.
    let r = c
        .put(b.url(&format!("/v2/app/manifests/{subject}?tag=stable&tag=prod")))
        .header("content-type", OCI_MANIFEST)
        .body(subject_bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let tags: Vec<_> = r.headers().get_all("oci-tag").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(tags, ["stable", "prod"]);
    let v: Value = c.get(b.url("/v2/app/tags/list")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["prod", "stable", "v1"]));
}

#[tokio::test]
async fn graceful_shutdown_and_restart_keep_everything() {
    if single_node("restarts the node on its data directory") {
        return;
    }
    let mut b = Berth::start();
    let c = b.client();
    let (d, m) = push_image(&c, &b, "keep", "v1", 11).await;
    assert!(b.stop().success());
    let b2 = Berth::start_in(&b.data_dir);
    let r = c.get(b2.url("/v2/keep/manifests/v1")).send().await.unwrap();
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(r.bytes().await.unwrap(), m);
    let out = b2.run(&["fsck"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn fsck_reports_damaged_and_missing_blobs() {
    if single_node("damages blob files and the SQLite file in the data directory") {
        return;
    }
    let mut b = Berth::start();
    let c = b.client();
    let (_, manifest) = push_image(&c, &b, "fsck/app", "v1", 12).await;
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    b.stop();
    let blob_file = |d: &str| b.data_dir.join("blobs/sha256").join(&d[7..9]).join(&d[7..]);
    assert!(b.run(&["fsck"]).status.success());
    // One flipped byte in a layer, and a missing config. The repository's blobs are sealed
    // (AES256), so fsck opens them as they are served: the damaged chunk does not open.
    let mut bytes = std::fs::read(blob_file(&layer)).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(blob_file(&layer), bytes).unwrap();
    std::fs::remove_file(blob_file(&config)).unwrap();
    let out = b.run(&["fsck"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("DAMAGE blob {layer}: reading it failed: sealed chunk 0 does not open")), "{text}");
    assert!(text.contains(&format!("DAMAGE blob {config}: recorded but missing")), "{text}");
    assert!(text.contains(&format!("blob {config} is missing")), "{text}");
}

#[tokio::test]
async fn fsck_reports_a_blob_stored_but_not_linked_in_the_manifests_repository() {
    if single_node("edits the SQLite file in the data directory") {
        return;
    }
    let mut b = Berth::start();
    let c = b.client();
    let (_, manifest) = push_image(&c, &b, "links/app", "v1", 13).await;
    push_image(&c, &b, "links/other", "v1", 13).await;
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    b.stop();
    assert!(b.run(&["fsck"]).status.success());
    // The layer is still stored and linked in links/other, but no longer in links/app: that
    // image is broken (its pulls fail), which fsck must say.
    let db = b.data_dir.join("meta.db");
    let script = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"DELETE FROM repository_blobs WHERE digest = ? AND repository_id = (SELECT id FROM repositories WHERE name = 'links/app')\", ({layer:?},)); c.commit()",
        db.to_str().unwrap()
    );
    ok(std::process::Command::new("python3").args(["-c", &script]).output().unwrap(), "unlink");
    let out = b.run(&["fsck"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("blob {layer} is not linked in the repository")), "{text}");
    assert!(text.contains("links/app@"), "{text}");
}
