"""Blobs sealed at rest (#16): pushes and pulls through the Docker engine, ranged reads with
curl and uploads through the ECR API from AES256, KMS and KMS_DSSE repositories; no layer
plaintext in the data directory, the bucket or the database, even while an upload is open;
a disabled key stops pushes and pulls of its repositories until it is enabled again."""

import hashlib
import io
import json
import os
import subprocess
import tarfile

import botocore.exceptions
import pytest
import requests

from conftest import REGION



MiB = 1 << 20


def key_with_alias(berth, alias):
    kms = berth.client("kms")
    key = kms.create_key(Description=alias)["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return key


def create(berth, name, encryption=None):
    args = ["ecr", "create-repository", "--repository-name", name]
    if encryption:
        args += ["--encryption-configuration", encryption]
    return json.loads(berth.aws(*args).stdout)["repository"]


def session(berth, token=None):
    s = requests.Session()
    s.auth = ("AWS", token or berth.token())
    return s


def upload(s, berth, repo, data, parts=None):
    """A blob through /v2/: monolithic, or in PATCHes of the sizes `parts` gives."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    base = berth.endpoint
    if parts is None:
        r = s.post(f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data)
        assert r.status_code == 201, r.text
        return digest
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location, at = r.headers["Location"], 0
    for n in parts:
        r = s.patch(base + location if location.startswith("/") else location, data=data[at:at + n],
                    headers={"Content-Range": f"{at}-{at + n - 1}", "Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        location, at = r.headers["Location"], at + n
    sep = "&" if "?" in location else "?"
    r = s.put((base + location if location.startswith("/") else location) + f"{sep}digest={digest}", data=data[at:])
    assert r.status_code == 201, r.text
    return digest


def image_manifest(s, berth, repo, layer, annotation="plain", subject=None):
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    cdigest, ldigest = upload(s, berth, repo, config), upload(s, berth, repo, layer)
    doc = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldigest, "size": len(layer)}],
        "annotations": {"note": annotation},
    }
    if subject:
        doc["subject"] = subject
    return json.dumps(doc).encode(), ldigest


def put_image(s, berth, repo, tag, layer, annotation="plain", subject=None):
    manifest, ldigest = image_manifest(s, berth, repo, layer, annotation, subject)
    r = s.put(f"{berth.endpoint}/v2/{repo}/manifests/{tag}", data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return ldigest


def curl_range(berth, token, repo, digest, first, last):
    p = subprocess.run(["curl", "-sS", "-f", "-L", "-u", f"AWS:{token}", "-r", f"{first}-{last}",
                        f"{berth.endpoint}/v2/{repo}/blobs/{digest}"], capture_output=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def rootfs_tar(path, files):
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def test_each_encryption_type_round_trips_through_docker_and_ranged_reads(berth, docker, tmp_path):
    key = key_with_alias(berth, "alias/images")
    repos = {
        "enc/aes": create(berth, "enc/aes"),
        "enc/kms": create(berth, "enc/kms", "encryptionType=KMS,kmsKey=alias/images"),
        "enc/dsse": create(berth, "enc/dsse", f"encryptionType=KMS_DSSE,kmsKey={key['Arn']}"),
    }
    assert repos["enc/aes"]["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert repos["enc/kms"]["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key["Arn"]}
    assert repos["enc/dsse"]["encryptionConfiguration"]["encryptionType"] == "KMS_DSSE"

    password = berth.aws("ecr", "get-login-password").stdout
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=password)
    tar = tmp_path / "rootfs.tar"
    # More than one 64 KiB chunk of incompressible bytes, so the layer spans several chunks.
    rootfs_tar(tar, {"etc/app.conf": b"version=1\n", "opt/blob.bin": os.urandom(300 * 1024)})
    docker.run("import", str(tar), "local-app:v1")
    image_id = docker.run("image", "inspect", "-f", "{{.Id}}", "local-app:v1").stdout.strip()
    for name in repos:
        ref = f"{berth.host}/{name}:v1"
        docker.run("tag", "local-app:v1", ref)
        assert "digest: sha256:" in docker.run("push", ref).stdout
    docker.run("rmi", "local-app:v1", *[f"{berth.host}/{n}:v1" for n in repos])
    for name in repos:
        ref = f"{berth.host}/{name}:v1"
        docker.run("pull", ref)
        assert docker.run("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip() == image_id
        docker.run("rmi", ref)

    # Ranges of a sealed blob: within a chunk, across chunk boundaries, the last byte.
    s, token = session(berth), berth.token()
    data = os.urandom(3 * 65536 + 777)
    for name in repos:
        digest = upload(s, berth, name, data, parts=[70001, 1, 65536])
        whole = s.get(f"{berth.endpoint}/v2/{name}/blobs/{digest}")
        assert whole.status_code == 200 and whole.content == data
        for first, last in [(0, 0), (5, 65534), (65535, 65536), (100000, 200000), (len(data) - 1, len(data) - 1),
                            (0, len(data) - 1)]:
            assert curl_range(berth, token, name, digest, first, last) == data[first:last + 1], (name, first, last)
        r = s.get(f"{berth.endpoint}/v2/{name}/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
        assert r.status_code == 416, r.text


def test_ecr_api_layer_uploads_into_a_kms_repository(berth):
    key_with_alias(berth, "alias/layers")
    create(berth, "api/kms", "encryptionType=KMS,kmsKey=alias/layers")
    ecr = berth.client()
    data = os.urandom(5 * MiB + 12345)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = ecr.initiate_layer_upload(repositoryName="api/kms")["uploadId"]
    ecr.upload_layer_part(repositoryName="api/kms", uploadId=upload_id, partFirstByte=0,
                          partLastByte=5 * MiB - 1, layerPartBlob=data[:5 * MiB])
    ecr.upload_layer_part(repositoryName="api/kms", uploadId=upload_id, partFirstByte=5 * MiB,
                          partLastByte=len(data) - 1, layerPartBlob=data[5 * MiB:])
    done = ecr.complete_layer_upload(repositoryName="api/kms", uploadId=upload_id, layerDigests=[digest])
    assert done["layerDigest"] == digest
    url = ecr.get_download_url_for_layer(repositoryName="api/kms", layerDigest=digest)["downloadUrl"]
    assert url.startswith(berth.endpoint), "a sealed layer is served by Berth, never from the bucket"
    got = requests.get(url)
    assert got.status_code == 200 and got.content == data
    # The same bytes again through the API: linked once, readable the same.
    check = ecr.batch_check_layer_availability(repositoryName="api/kms", layerDigests=[digest])["layers"][0]
    assert check["layerAvailability"] == "AVAILABLE" and check["layerSize"] == len(data)


def stored_files(berth):
    """Every file of the node's data directory (single node), or every object under the
    cluster's bucket prefix and a dump of its database."""
    if not berth.cluster:
        for root, _, files in os.walk(os.path.join(berth.data_dir, "data")):
            for f in files:
                path = os.path.join(root, f)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue  # the admin socket
                with open(path, "rb") as fh:
                    yield path, fh.read()
        return
    from test_s3_blobs import s3_client

    bucket, s3 = s3_client()
    prefix = berth.cluster.database + "/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield o["Key"], s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    dump = subprocess.run(["pg_dump", berth.cluster.admin_url.rsplit("/", 1)[0] + "/" + berth.cluster.database],
                          capture_output=True)
    assert dump.returncode == 0, dump.stderr
    yield "pg_dump", dump.stdout


def holding(berth, marker):
    return [name for name, data in stored_files(berth) if marker in data]


def test_no_layer_or_manifest_plaintext_is_stored_even_while_an_upload_is_open(berth):
    key_with_alias(berth, "alias/secret")
    create(berth, "clear/aes")
    create(berth, "clear/kms", "encryptionType=KMS,kmsKey=alias/secret")
    s = session(berth)
    marker = b"BERTH-LAYER-MARKER-" + os.urandom(6).hex().encode()
    note = "BERTH-MANIFEST-MARKER-" + os.urandom(6).hex()
    layer = (marker + b"\n") * 20000  # ~600 KiB: whole chunks and a partial one
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    for repo in ("clear/aes", "clear/kms"):
        put_image(s, berth, repo, "v1", layer, annotation=note)
        assert s.get(f"{berth.endpoint}/v2/{repo}/blobs/sha256:{hashlib.sha256(layer).hexdigest()}").content == layer
        got = s.get(f"{berth.endpoint}/v2/{repo}/manifests/v1", headers=accept)
        assert got.status_code == 200 and got.json()["annotations"] == {"note": note}
        digest = got.headers["Docker-Content-Digest"]
        assert digest == "sha256:" + hashlib.sha256(got.content).hexdigest()
        # A referrer's annotations are listed in clear, though stored sealed.
        subject = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": len(got.content)}
        put_image(s, berth, repo, "sig", b"signature", annotation=note + "-referrer", subject=subject)
        listed = s.get(f"{berth.endpoint}/v2/{repo}/referrers/{digest}").json()["manifests"]
        assert [m["annotations"] for m in listed] == [{"note": note + "-referrer"}], listed

    # An upload left open after odd-sized PATCHes (a partial chunk staged with the record).
    open_marker = b"BERTH-OPEN-UPLOAD-" + os.urandom(6).hex().encode()
    pending = (open_marker + b"\n") * 9000
    r = s.post(f"{berth.endpoint}/v2/clear/kms/blobs/uploads/")
    location, at = r.headers["Location"], 0
    for n in (1000, 70000, 33333):
        r = s.patch(berth.endpoint + location, data=pending[at:at + n],
                    headers={"Content-Range": f"{at}-{at + n - 1}", "Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        location, at = r.headers["Location"], at + n
    layer_hex = hashlib.sha256(layer).hexdigest()
    assert any(layer_hex in name for name, _ in stored_files(berth)), "the look covers where blobs are stored"
    assert holding(berth, open_marker) == [], "an open upload's bytes are sealed, its staged chunk too"
    assert holding(berth, marker) == [], "no layer plaintext anywhere"
    assert holding(berth, note.encode()) == [], "no manifest plaintext anywhere, the database included"
    sep = "&" if "?" in location else "?"
    r = s.put(f"{berth.endpoint}{location}{sep}digest=sha256:{hashlib.sha256(pending[:at]).hexdigest()}")
    assert r.status_code == 201, r.text
    assert holding(berth, open_marker) == []


def test_a_disabled_key_stops_pushes_and_pulls_until_it_is_enabled(berth):
    key = key_with_alias(berth, "alias/toggle")
    create(berth, "toggle/app", "encryptionType=KMS,kmsKey=alias/toggle")
    s = session(berth)
    layer = os.urandom(100000)
    digest = put_image(s, berth, "toggle/app", "v1", layer)
    kms, ecr = berth.client("kms"), berth.client()
    # An ECR API upload under way when the key is disabled: its next part and its completion fail.
    upload_id = ecr.initiate_layer_upload(repositoryName="toggle/app")["uploadId"]
    part = os.urandom(5 * MiB + 3)
    ecr.upload_layer_part(repositoryName="toggle/app", uploadId=upload_id, partFirstByte=0,
                          partLastByte=5 * MiB - 1, layerPartBlob=part[:5 * MiB])
    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.upload_layer_part(repositoryName="toggle/app", uploadId=upload_id, partFirstByte=5 * MiB,
                              partLastByte=len(part) - 1, layerPartBlob=part[5 * MiB:])
    assert e.value.response["Error"]["Code"] == "KmsException", e.value.response
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.complete_layer_upload(repositoryName="toggle/app", uploadId=upload_id,
                                  layerDigests=["sha256:" + hashlib.sha256(part[:5 * MiB]).hexdigest()])
    assert e.value.response["Error"]["Code"] == "KmsException", e.value.response

    r = s.get(f"{berth.endpoint}/v2/toggle/app/blobs/{digest}")
    assert r.status_code == 403, r.text
    error = r.json()["errors"][0]
    assert error["code"] == "DENIED" and key["Arn"] in error["message"], error
    r = s.post(f"{berth.endpoint}/v2/toggle/app/blobs/uploads/")
    assert r.status_code == 403 and key["Arn"] in r.text, r.text
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.initiate_layer_upload(repositoryName="toggle/app")
    assert e.value.response["Error"]["Code"] == "KmsException", e.value.response
    assert e.value.response.get("kmsError") == "DisabledException" or "DisabledException" in str(e.value.response)
    r = s.get(f"{berth.endpoint}/v2/toggle/app/manifests/v1",
              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED" and key["Arn"] in r.text, r.text
    got = ecr.batch_get_image(repositoryName="toggle/app", imageIds=[{"imageTag": "v1"}])
    assert got["images"] == [] and got["failures"][0]["failureCode"] == "KmsError", got
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.put_image(repositoryName="toggle/app", imageTag="v3", imageManifest=json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": len(layer)},
            "layers": []}))
    assert e.value.response["Error"]["Code"] == "KmsException", e.value.response

    kms.enable_key(KeyId=key["KeyId"])
    assert s.get(f"{berth.endpoint}/v2/toggle/app/blobs/{digest}").content == layer
    put_image(s, berth, "toggle/app", "v2", os.urandom(1000))
    # The interrupted upload goes on where it was.
    ecr.upload_layer_part(repositoryName="toggle/app", uploadId=upload_id, partFirstByte=5 * MiB,
                          partLastByte=len(part) - 1, layerPartBlob=part[5 * MiB:])
    done = ecr.complete_layer_upload(repositoryName="toggle/app", uploadId=upload_id,
                                     layerDigests=["sha256:" + hashlib.sha256(part).hexdigest()])
    assert done["layerDigest"] == "sha256:" + hashlib.sha256(part).hexdigest()


def test_a_read_only_user_of_the_account_pulls_from_a_kms_repository(berth):
    key_with_alias(berth, "alias/team")
    create(berth, "team/app", "encryptionType=KMS,kmsKey=alias/team")
    layer = os.urandom(70000)
    digest = put_image(session(berth), berth, "team/app", "v1", layer)
    reader = berth.create_user(
        "reader", attach="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    s = session(berth, berth.token(*reader))
    assert s.get(f"{berth.endpoint}/v2/team/app/blobs/{digest}").content == layer
    r = s.post(f"{berth.endpoint}/v2/team/app/blobs/uploads/")
    assert r.status_code in (401, 403), "read-only"


OTHER_ACCOUNT = "987654321098"


def test_another_account_pulls_only_once_the_key_policy_lets_it_decrypt(berth, docker, tmp_path):
    """The seed's scenario: account B may pull by the repository policy, but the repository's
    KMS key's policy does not let B decrypt, so `docker pull` is denied naming the key; once
    the key policy allows B's kms:Decrypt, the pull works."""
    key = key_with_alias(berth, "alias/shared")
    create(berth, "shared/app", "encryptionType=KMS,kmsKey=alias/shared")
    ref = f"{berth.host}/shared/app:v1"
    tar = tmp_path / "rootfs.tar"
    rootfs_tar(tar, {"etc/shared.conf": os.urandom(2000)})
    docker.run("import", str(tar), ref)
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=berth.token())
    docker.run("push", ref)
    docker.run("rmi", ref)

    b = berth.admin("create-account", OTHER_ACCOUNT)["AccessKey"]
    b_key, b_secret = b["AccessKeyId"], b["SecretAccessKey"]
    berth.aws("ecr", "set-repository-policy", "--repository-name", "shared/app", "--policy-text", json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Sid": "B pulls", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]}]}))
    docker.run("logout", berth.host)
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=berth.token(b_key, b_secret))
    denied = docker.run("pull", ref, check=False)
    assert denied.returncode != 0
    assert "denied" in denied.stderr and key["Arn"] in denied.stderr and "kms:Decrypt" in denied.stderr, denied.stderr
    b_ecr = berth.client(key=b_key, secret=b_secret)
    got = b_ecr.batch_get_image(registryId="123456789012", repositoryName="shared/app", imageIds=[{"imageTag": "v1"}])
    assert got["images"] == [] and got["failures"][0]["failureCode"] == "KmsError", got
    assert key["Arn"] in got["failures"][0]["failureReason"]

    kms = berth.client("kms")
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    policy["Statement"].append({"Sid": "B decrypts through ECR", "Effect": "Allow",
                                "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
                                "Action": "kms:Decrypt", "Resource": "*",
                                "Condition": {"StringEquals": {"kms:ViaService": f"ecr.{REGION}.amazonaws.com"}}})
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(policy))
    docker.run("pull", ref)
    got = b_ecr.batch_get_image(registryId="123456789012", repositoryName="shared/app", imageIds=[{"imageTag": "v1"}])
    assert len(got["images"]) == 1 and got["failures"] == [], got


def bucket_objects(prefix):
    from test_s3_blobs import s3_client

    bucket, s3 = s3_client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            yield o["Key"], s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()


def data_files(d):
    for root, _, files in os.walk(d):
        for f in files:
            path = os.path.join(root, f)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    yield path, fh.read()


@pytest.mark.skipif(os.environ.get("BERTH_TEST_TOPOLOGY") == "cluster",
                    reason="single-node by nature: it kills its own node and reads its SQLite database")
@pytest.mark.parametrize("store", ["filesystem", "s3"])
def test_berth_encrypt_seals_what_was_stored_as_sent_and_resumes_after_kill_9(tmp_path, store):
    """Blobs and manifests stored as sent (an AES256 repository on a data directory declared
    encrypted by its filesystem, or on a bucket that encrypted them itself, SSE-S3), then that
    no longer trusted to: `berth encrypt`, killed part-way with the server, then run again,
    seals every blob and manifest; every image pulls back bit-identical, no marker is left in
    the data directory (blobs, SQLite file and WAL) or the bucket, and fsck passes."""
    import re
    import signal

    from conftest import Berth, berth_bin
    from test_s3_blobs import bucket_url

    prefix = "enc" + os.urandom(5).hex()
    if store == "s3":
        trusted = {"BERTH_BLOBS": bucket_url(prefix, server_side_encryption="AES256")}
        plain = {"BERTH_BLOBS": bucket_url(prefix)}
        stored = lambda: bucket_objects(prefix)  # noqa: E731
    else:
        trusted = {"BERTH_BLOBS_ENCRYPTED_AT_REST": "true"}
        plain = {}
        stored = lambda: data_files(os.path.join(tmp_path, "data", "blobs"))  # noqa: E731
    berth = Berth(str(tmp_path), extra_env=trusted)
    images = {}
    try:
        create(berth, "old/app")
        s = session(berth)
        for i in range(24):
            marker = f"BERTH-OLD-MARKER-{i}-{os.urandom(4).hex()}"
            layer = (marker.encode() + b"\n") * 3000 + os.urandom(300_000)
            put_image(s, berth, "old/app", f"v{i}", layer, annotation=marker)
            m = s.get(f"{berth.endpoint}/v2/old/app/manifests/v{i}",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            images[f"v{i}"] = (marker, m.content, hashlib.sha256(layer).hexdigest(), layer)
    finally:
        berth.stop()
    first = images["v0"][0].encode()
    assert any(first in data for _, data in stored()), "stored as sent: the store encrypted it"
    assert any(first in data for _, data in data_files(os.path.join(tmp_path, "data"))), "manifests as sent"

    berth = Berth(str(tmp_path), extra_env=dict(plain, BERTH_ENCRYPT_PAUSE_MS="100"))
    env = dict(os.environ, **plain)
    run = subprocess.Popen([berth_bin(), "encrypt", "--data-dir", os.path.join(tmp_path, "data")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Killed (the server, which does the work) once some blobs are sealed.
    seen = []
    for line in run.stderr:
        seen.append(line)
        sealed = re.match(r"blobs: \d+ checked, (\d+) sealed", line)
        if sealed and int(sealed.group(1)) >= 3:
            break
    berth.proc.send_signal(signal.SIGKILL)
    berth.proc.wait()
    berth.log.close()
    out, err = run.communicate(timeout=30)
    assert run.returncode != 0, f"the run was cut off: {seen} {out} {err}"

    berth = Berth(str(tmp_path), extra_env=plain)
    try:
        done = subprocess.run([berth_bin(), "encrypt", "--data-dir", os.path.join(tmp_path, "data")],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        # 24 layers and one config (the images share it).
        assert report["problems"] == [] and report["blobsChecked"] == 25, report
        assert 0 < report["blobsSealed"] < 25 and report["blobsSealed"] + report["blobsAlreadyProtected"] == 25, report
        s = session(berth)
        for tag, (marker, manifest, layer_hex, layer) in images.items():
            m = s.get(f"{berth.endpoint}/v2/old/app/manifests/{tag}",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert m.status_code == 200 and m.content == manifest, tag
            assert s.get(f"{berth.endpoint}/v2/old/app/blobs/sha256:{layer_hex}").content == layer, tag
        again = json.loads(subprocess.run([berth_bin(), "encrypt", "--data-dir", os.path.join(tmp_path, "data")],
                                          capture_output=True, text=True, env=env, timeout=600).stdout)
        assert again["blobsSealed"] == 0 and again["manifestsSealed"] == 0, again
    finally:
        berth.stop()
    for marker, _, _, _ in images.values():
        m = marker.encode()
        assert [k for k, data in stored() if m in data] == [], marker
        assert [p for p, data in data_files(os.path.join(tmp_path, "data")) if m in data] == [], marker
    fsck = subprocess.run([berth_bin(), "fsck", "--data-dir", os.path.join(tmp_path, "data")],
                          capture_output=True, text=True, env=env)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@pytest.mark.skipif(os.environ.get("BERTH_TEST_TOPOLOGY") == "cluster",
                    reason="single-node by nature: it reads the node's blob files and SQLite database")
def test_a_blob_stored_with_one_layer_gets_two_once_a_kms_dsse_repository_links_it(berth):
    import sqlite3

    key = key_with_alias(berth, "alias/two")
    create(berth, "one/app")
    create(berth, "two/app", "encryptionType=KMS_DSSE,kmsKey=alias/two")
    s = session(berth)
    data = os.urandom(200_000)  # four chunks
    digest = upload(s, berth, "one/app", data)
    hexd = digest.split(":")[1]
    path = os.path.join(berth.data_dir, "data", "blobs", "sha256", hexd[:2], hexd)
    assert os.path.getsize(path) == len(data) + 4 * 16, "one layer: a tag per chunk"
    upload(s, berth, "two/app", data, parts=[70000, 70000])
    assert os.path.getsize(path) == len(data) + 4 * 32, "two layers: two tags per chunk"
    db = sqlite3.connect(os.path.join(berth.data_dir, "data", "meta.db"))
    rows = sorted(db.execute("SELECT wrapping, layers FROM blob_keys WHERE digest = ?", (digest,)).fetchall())
    db.close()
    assert rows == sorted([("AES256", 2), (key["Arn"], 2)]), rows
    for repo in ("one/app", "two/app"):
        assert s.get(f"{berth.endpoint}/v2/{repo}/blobs/{digest}").content == data, repo
