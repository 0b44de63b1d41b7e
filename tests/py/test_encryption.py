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


def put_image(s, berth, repo, tag, layer, annotation="plain"):
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    cdigest, ldigest = upload(s, berth, repo, config), upload(s, berth, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldigest, "size": len(layer)}],
        "annotations": {"note": annotation},
    }).encode()
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


def test_no_layer_plaintext_is_stored_even_while_an_upload_is_open(berth):
    key_with_alias(berth, "alias/secret")
    create(berth, "clear/aes")
    create(berth, "clear/kms", "encryptionType=KMS,kmsKey=alias/secret")
    s = session(berth)
    marker = b"BERTH-LAYER-MARKER-" + os.urandom(6).hex().encode()
    layer = (marker + b"\n") * 20000  # ~600 KiB: whole chunks and a partial one
    for repo in ("clear/aes", "clear/kms"):
        put_image(s, berth, repo, "v1", layer)
        assert s.get(f"{berth.endpoint}/v2/{repo}/blobs/sha256:{hashlib.sha256(layer).hexdigest()}").content == layer

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
    kms.disable_key(KeyId=key["KeyId"])

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

    kms.enable_key(KeyId=key["KeyId"])
    assert s.get(f"{berth.endpoint}/v2/toggle/app/blobs/{digest}").content == layer
    put_image(s, berth, "toggle/app", "v2", os.urandom(1000))


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
