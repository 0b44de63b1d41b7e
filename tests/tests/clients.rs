//! Real clients against the real binary: the Docker engine, skopeo, containerd's ctr and
//! oras (oras-py). These need the clients installed; `.ci/run` installs them.

use std::path::Path;
use std::process::Command;

use berth_e2e::*;
use serde_json::Value;

/// A Docker image archive (the `docker save` format) with two layers, tagged `reference`.
/// Returns the archive path and the layers' diff ids.
fn docker_archive(dir: &Path, reference: &str) -> (std::path::PathBuf, Vec<String>) {
    let root = dir.join("archive");
    let layers = [
        tar_layer(&[("etc/hostname", b"berth-test\n")]),
        tar_layer(&[("usr/share/app/blob.bin", &pseudo_random(42, 300_000))]),
    ];
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let mut layer_paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("layer{i}/layer.tar");
        std::fs::create_dir_all(root.join(format!("layer{i}"))).unwrap();
        std::fs::write(root.join(&p), l).unwrap();
        layer_paths.push(p);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "layer 0"}, {"created_by": "layer 1"}],
    }))
    .unwrap();
    let config_name = format!("{}.json", &sha256(&config)[7..]);
    std::fs::write(root.join(&config_name), &config).unwrap();
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [reference], "Layers": layer_paths}]);
    std::fs::write(root.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let archive = dir.join("image.tar");
    ok(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&archive).arg(".").output().unwrap(), "tar");
    (archive, diff_ids)
}

#[tokio::test]
async fn docker_pushes_and_pulls_a_two_layer_image() {
    let b = Berth::start();
    let docker = Daemon::dockerd();
    let tmp = tempfile::tempdir().unwrap();
    let reference = format!("{}/team/app:v1", b.host());
    let (archive, diff_ids) = docker_archive(tmp.path(), &reference);
    ok(docker.docker(&["load", "-i", archive.to_str().unwrap()]), "docker load");
    let out = docker.docker(&["push", &reference]);
    assert!(!out.status.success(), "a push without login is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no basic auth credentials"), "{out:?}");
    ok(docker.docker(&["login", "--username", "AWS", "--password", &b.token(), &b.host()]), "docker login");
    let out = ok(docker.docker(&["push", &reference]), "docker push");
    let pushed = out.lines().find_map(|l| l.split("digest: ").nth(1)).expect("push prints the digest");
    let pushed = pushed.split_whitespace().next().unwrap().to_string();
    ok(docker.docker(&["rmi", &reference]), "docker rmi");
    assert!(!docker.docker(&["image", "inspect", &reference]).status.success(), "image is gone locally");
    let out = ok(docker.docker(&["pull", &reference]), "docker pull");
    assert!(out.contains(&pushed), "{out}");
    let layers = ok(docker.docker(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", &reference]), "inspect");
    let layers: Vec<String> = serde_json::from_str(layers.trim()).unwrap();
    assert_eq!(layers, diff_ids);

    // What Docker pushed is there over the API too, and a second push uploads nothing new.
    let c = b.client();
    let r = c.get(b.url("/v2/team/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), pushed);
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), "application/vnd.docker.distribution.manifest.v2+json");
    let (status, _) = b.ecr("PutAccountSetting", serde_json::json!({"name": "BLOB_MOUNTING", "value": "ENABLED"}));
    assert_eq!(status, 200);
    let again = format!("{}/team/other:v1", b.host());
    ok(docker.docker(&["tag", &reference, &again]), "docker tag");
    let out = ok(docker.docker(&["push", &again]), "docker push (mount)");
    assert!(out.contains("Mounted from team/app") || out.contains("Layer already exists"), "{out}");
    let out = b.run(&["fsck"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // docker-credential-berth: no login, AWS credentials in the environment, and docker pulls.
    ok(docker.docker(&["logout", &b.host()]), "docker logout");
    ok(docker.docker(&["rmi", &reference, &again]), "docker rmi");
    let config = docker.dir.path().join("client/config.json");
    std::fs::write(&config, serde_json::json!({"credHelpers": {b.host(): "berth"}}).to_string()).unwrap();
    let creds = [("AWS_ACCESS_KEY_ID", ROOT_KEY_ID), ("AWS_SECRET_ACCESS_KEY", ROOT_SECRET), ("AWS_REGION", REGION)];
    let out = ok(docker.docker_env(&["pull", &reference], &creds), "docker pull through the credential helper");
    assert!(out.contains(&pushed), "{out}");
    let wrong = [("AWS_ACCESS_KEY_ID", ROOT_KEY_ID), ("AWS_SECRET_ACCESS_KEY", "wrong"), ("AWS_REGION", REGION)];
    ok(docker.docker(&["rmi", &reference]), "docker rmi");
    assert!(!docker.docker_env(&["pull", &reference], &wrong).status.success(), "a wrong secret gets no token");
}

fn skopeo(args: &[&str]) -> String {
    ok(Command::new("skopeo").args(args).output().expect("skopeo must be installed"), &format!("skopeo {args:?}"))
}

/// Builds a two-platform OCI layout and copies it into Berth with skopeo; returns the layout
/// and the index digest (`--preserve-digests`: every manifest and layer is pushed unchanged).
fn creds(b: &Berth) -> String {
    format!("AWS:{}", b.token())
}

fn push_multi_arch(b: &Berth, dir: &Path, repo_tag: &str) -> (OciLayout, String) {
    let layout = OciLayout::create(&dir.join("src"));
    let amd = layout.image("amd64", 1);
    let arm = layout.image("arm64", 2);
    let index = layout.index("v1", &[("amd64", amd), ("arm64", arm)]);
    let src = format!("oci:{}:v1", layout.dir.display());
    let digestfile = dir.join("digest");
    let dest = format!("docker://{}/{repo_tag}", b.host());
    let df = digestfile.to_str().unwrap();
    let creds = creds(b);
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        "--digestfile",
        df,
        &src,
        &dest,
    ]);
    assert_eq!(std::fs::read_to_string(digestfile).unwrap().trim(), index);
    (layout, index)
}

#[tokio::test]
async fn skopeo_copies_a_multi_arch_index_in_and_out() {
    let b = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, index) = push_multi_arch(&b, tmp.path(), "multi/app:v1");
    let c = b.client();
    let r = c.get(b.url("/v2/multi/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), OCI_INDEX);
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), index);
    let body = r.bytes().await.unwrap();
    assert_eq!(sha256(&body), index, "the index is served byte for byte");

    let remote = format!("docker://{}/multi/app:v1", b.host());
    let creds = creds(&b);
    let info: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--override-arch",
        "arm64",
        &remote,
    ]))
    .unwrap();
    assert_eq!(info["Architecture"], "arm64");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    let raw: Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, "--raw", &remote])).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);

    // Every blob, manifests included, comes back byte for byte.
    copy_out_unchanged(&remote, &creds, &layout, &tmp.path().join("out"));
}

/// Copies every platform of `remote` into an OCI layout at `out` and checks that each blob of
/// `layout` came back byte for byte.
fn copy_out_unchanged(remote: &str, creds: &str, layout: &OciLayout, out: &Path) {
    let out_ref = format!("oci:{}:v1", out.display());
    let keep = ["--preserve-digests", "--dest-oci-accept-uncompressed-layers"];
    skopeo(&["copy", "--all", keep[0], keep[1], "--src-tls-verify=false", "--src-creds", creds, remote, &out_ref]);
    for entry in std::fs::read_dir(layout.dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        let copied = std::fs::read(out.join("blobs/sha256").join(entry.file_name()))
            .unwrap_or_else(|_| panic!("blob {:?} missing after the round trip", entry.file_name()));
        assert_eq!(copied, bytes);
    }
}

#[tokio::test]
async fn containerd_pulls_and_pushes() {
    let b = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let (_layout, index) = push_multi_arch(&b, tmp.path(), "ctr/app:v1");
    let ctrd = Daemon::containerd();
    let v1 = format!("{}/ctr/app:v1", b.host());
    let user = creds(&b);
    ok(ctrd.ctr(&["images", "pull", "--plain-http", "--user", &user, "--all-platforms", &v1]), "ctr images pull");
    let listed = ok(ctrd.ctr(&["images", "ls"]), "ctr images ls");
    assert!(listed.contains(&index), "{listed}");
    // Push under another tag and into another repository (blobs uploaded or mounted again).
    for target in [format!("{}/ctr/app:v2", b.host()), format!("{}/ctr/copy:v1", b.host())] {
        ok(ctrd.ctr(&["images", "tag", &v1, &target]), "ctr images tag");
        ok(ctrd.ctr(&["images", "push", "--plain-http", "--user", &user, &target]), "ctr images push");
    }
    let c = b.client();
    for path in ["/v2/ctr/app/manifests/v2", "/v2/ctr/copy/manifests/v1"] {
        let r = c.head(b.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), index);
    }
    let out = b.run(&["fsck"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn oras_pushes_an_artifact_found_through_referrers() {
    let b = Berth::start();
    let c = b.client();
    let (subject, subject_bytes) = push_image(&c, &b, "oras/app", "v1", 5).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sbom.json");
    std::fs::write(&file, br#"{"bomFormat":"CycloneDX","components":[]}"#).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients");
    let token = b.token();
    let out = Command::new("python3")
        .env("BERTH_TOKEN", &token)
        .arg(script.join("oras_push.py"))
        .arg(b.host())
        .arg(format!("{}/oras/app:sbom", b.host()))
        .arg(OCI_MANIFEST)
        .arg(&subject)
        .arg(subject_bytes.len().to_string())
        .arg(&file)
        .output()
        .unwrap();
    let artifact = ok(out, "oras push").trim().to_string();
    assert!(artifact.starts_with("sha256:"), "{artifact}");

    let r = c.get(b.url(&format!("/v2/oras/app/referrers/{subject}"))).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    let found: Vec<&str> = v["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(found, [artifact.as_str()]);

    let pulled = tmp.path().join("pulled");
    let out = Command::new("python3")
        .env("BERTH_TOKEN", &token)
        .arg(script.join("oras_pull.py"))
        .arg(b.host())
        .arg(format!("{}/oras/app@{artifact}", b.host()))
        .arg(&pulled)
        .output()
        .unwrap();
    ok(out, "oras pull");
    assert_eq!(std::fs::read(pulled.join("sbom.json")).unwrap(), std::fs::read(&file).unwrap());
}

/// Blobs in S3 with `presigned_reads=true` and server-side encryption (SSE-S3, which is what
/// ECR's `AES256` is, so Berth leaves those blobs to the bucket): a blob GET is a `307` to a
/// presigned URL of the S3 server, which docker, skopeo and ctr follow (Range requests too),
/// pulling back what was pushed; a blob the repository does not hold is still refused by
/// Berth, not redirected; a blob Berth sealed (a `KMS` repository's) is never redirected.
#[tokio::test]
async fn docker_skopeo_and_ctr_follow_blob_redirects_to_s3() {
    if single_node("it picks its own stores (S3 with presigned reads) and runs the same in both passes") {
        return;
    }
    let bucket = test_bucket("&presigned_reads=true&server_side_encryption=AES256");
    let b = Berth::start_env(&[("BERTH_BLOBS", bucket.as_str())]);
    let tmp = tempfile::tempdir().unwrap();
    let (layout, index) = push_multi_arch(&b, tmp.path(), "s3/app:v1");

    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let token = b.token();
    let layer = std::fs::read_dir(layout.dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap();
    let bytes = std::fs::read(layer.path()).unwrap();
    let digest = format!("sha256:{}", layer.file_name().to_string_lossy());
    let r = c.get(b.url(&format!("/v2/s3/app/blobs/{digest}"))).basic_auth("AWS", Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let direct = reqwest::get(&location).await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.bytes().await.unwrap(), bytes);
    let ranged = c.get(&location).header("range", "bytes=1-4").send().await.unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), bytes[1..5]);
    let missing =
        c.get(b.url(&format!("/v2/s3/other/blobs/{digest}"))).basic_auth("AWS", Some(&token)).send().await.unwrap();
    assert_eq!(missing.status(), 404, "a repository that does not hold the blob gets no redirect");
    let (status, _) = b.ecr(
        "CreateRepository",
        serde_json::json!({"repositoryName": "s3/sealed", "encryptionConfiguration": {"encryptionType": "KMS"}}),
    );
    assert_eq!(status, 200);
    let sealed = pseudo_random(16, 200_000);
    let sealed_digest = push_blob(&b.client(), &b, "s3/sealed", &sealed).await;
    let r = c
        .get(b.url(&format!("/v2/s3/sealed/blobs/{sealed_digest}")))
        .basic_auth("AWS", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a blob Berth sealed is served by Berth, never from the bucket");
    assert_eq!(r.bytes().await.unwrap(), sealed);

    // skopeo: every blob back byte for byte through the redirects.
    let remote = format!("docker://{}/s3/app:v1", b.host());
    let creds = creds(&b);
    copy_out_unchanged(&remote, &creds, &layout, &tmp.path().join("out"));

    // ctr pulls every platform.
    let ctrd = Daemon::containerd();
    let v1 = format!("{}/s3/app:v1", b.host());
    ok(ctrd.ctr(&["images", "pull", "--plain-http", "--user", &creds, "--all-platforms", &v1]), "ctr pull");
    assert!(ok(ctrd.ctr(&["images", "ls"]), "ctr images ls").contains(&index));

    // docker pushes an image (its uploads go to S3) and pulls it back through the redirects.
    let docker = Daemon::dockerd();
    let reference = format!("{}/s3/docker:v1", b.host());
    let (archive, diff_ids) = docker_archive(tmp.path(), &reference);
    ok(docker.docker(&["load", "-i", archive.to_str().unwrap()]), "docker load");
    ok(docker.docker(&["login", "--username", "AWS", "--password", &b.token(), &b.host()]), "docker login");
    ok(docker.docker(&["push", &reference]), "docker push");
    ok(docker.docker(&["rmi", &reference]), "docker rmi");
    ok(docker.docker(&["pull", &reference]), "docker pull");
    let layers = ok(docker.docker(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", &reference]), "inspect");
    let layers: Vec<String> = serde_json::from_str(layers.trim()).unwrap();
    assert_eq!(layers, diff_ids);
}
