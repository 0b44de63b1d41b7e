"""Blobs in an S3 bucket (`--blobs s3://…`) on the S3 server scripts/test starts
(`BERTH_TEST_S3`), metadata in PostgreSQL (`BERTH_TEST_POSTGRES`): the refusals at start (a
missing bucket, wrong credentials, a URL that is not S3's), one chunked upload whose chunks —
some under S3's 5 MiB part minimum — go to three different nodes, and an image pushed through
one node with skopeo pulled back bit-identical through the others."""
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

from conftest import Berth, single_node

pytestmark = single_node('it starts its own nodes on PostgreSQL and S3')
from test_postgres_nodes import database, keyring, psql, start_refused  # noqa: F401 (fixtures)

MIB = 1024 * 1024


def bucket_url(prefix=None, **override):
    """BERTH_TEST_S3 with a prefix of its own (every test sees an empty store), parameters
    replaced by `override`."""
    url = os.environ.get("BERTH_TEST_S3")
    assert url, "BERTH_TEST_S3 must name an S3 bucket (scripts/test starts one)"
    base, query = url.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    params.update(override)
    bucket = params.pop("bucket", base[len("s3://"):])
    prefix = prefix or "py" + uuid.uuid4().hex[:10]
    return f"s3://{bucket}/{prefix}?" + "&".join(f"{k}={v}" for k, v in params.items())


def test_a_node_refuses_to_start_on_a_bucket_it_cannot_use(database, keyring, tmp_path):  # noqa: F811
    env = {"BERTH_META": database, "BERTH_MASTER_KEY_FILE": keyring}
    err = start_refused(str(tmp_path / "a"), dict(env, BERTH_BLOBS=bucket_url(bucket="no-such-bucket")))
    assert "the blob store s3://no-such-bucket/" in err and "does not answer" in err, err
    err = start_refused(str(tmp_path / "b"), dict(env, BERTH_BLOBS=bucket_url(secret_access_key="wrong")))
    assert "does not answer" in err, err
    assert "wrong" not in err.split("does not answer")[0], "the secret is not printed"
    err = start_refused(str(tmp_path / "c"), dict(env, BERTH_BLOBS="file:///tmp/blobs"))
    assert "expected an s3:// URL" in err, err
    url = bucket_url()
    without_keys = url.split("&access_key_id=")[0]
    err = start_refused(str(tmp_path / "d"), dict(env, BERTH_BLOBS=without_keys, AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
                                                  AWS_SECRET_ACCESS_KEY="not-for-s3"))
    assert "no access key" in err and "BERTH_S3_ACCESS_KEY_ID" in err, err
    # Nothing was written to the database.
    assert psql(database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"


@pytest.fixture
def three_nodes(database, keyring):  # noqa: F811
    """Three nodes on one database and one bucket prefix; credentials for S3 from BERTH_S3_*."""
    url = bucket_url()
    base, query = url.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    env = {
        "BERTH_META": database,
        "BERTH_MASTER_KEY_FILE": keyring,
        "BERTH_BLOBS": f"{base}?endpoint={params['endpoint']}&region={params['region']}",
        "BERTH_S3_ACCESS_KEY_ID": params["access_key_id"],
        "BERTH_S3_SECRET_ACCESS_KEY": params["secret_access_key"],
    }
    dirs = [tempfile.mkdtemp(prefix="s3node") for _ in range(3)]
    nodes = []
    try:
        for d in dirs:
            nodes.append(Berth(d, extra_env=env))
        yield nodes
    finally:
        for n in nodes:
            n.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def test_a_chunked_upload_continues_on_every_node_across_the_part_minimum(three_nodes):
    a, b, c = three_nodes
    a.client().create_repository(repositoryName="chunks")
    token = a.token()
    sessions = []
    for node in (a, b, c):
        s = requests.Session()
        s.auth = ("AWS", token)
        sessions.append((s, node.endpoint))
    chunks = [os.urandom(n) for n in (2 * MIB, 6 * MIB + 3, 1 * MIB, 7)]
    whole = b"".join(chunks)
    digest = "sha256:" + hashlib.sha256(whole).hexdigest()

    s, base = sessions[0]
    r = s.post(f"{base}/v2/chunks/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    path = location[location.index("/v2/"):] if "://" in location else location
    offset = 0
    for i, chunk in enumerate(chunks[:3]):
        s, base = sessions[i]
        r = s.patch(f"{base}{path}", data=chunk, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            "Content-Length": str(len(chunk)),
        })
        assert r.status_code == 202, (i, r.status_code, r.text)
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        location = r.headers["Location"]
        path = location[location.index("/v2/"):] if "://" in location else location
    # Where the upload stands, asked of a node that did not receive the last chunk.
    s, base = sessions[0]
    r = s.get(f"{base}{path}")
    assert r.status_code == 204 and r.headers["Range"] == f"0-{offset - 1}", r.headers
    sep = "&" if "?" in path else "?"
    r = s.put(f"{base}{path}{sep}digest={digest}", data=chunks[3])
    assert r.status_code == 201, r.text
    for s, base in sessions:
        got = s.get(f"{base}/v2/chunks/blobs/{digest}")
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == digest[7:]
        part = s.get(f"{base}/v2/chunks/blobs/{digest}", headers={"Range": f"bytes={2 * MIB - 2}-{2 * MIB + 1}"})
        assert part.status_code == 206 and part.content == whole[2 * MIB - 2:2 * MIB + 2]


def test_an_image_pushed_through_one_node_pulls_back_identical_through_the_others(three_nodes, tmp_path):
    a, b, c = three_nodes
    a.client().create_repository(repositoryName="app")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "big.bin").write_bytes(os.urandom(7 * MIB))
    (tmp_path / "root" / "hello.txt").write_text("hello from S3\n")
    tar = tmp_path / "layer.tar"
    subprocess.run(["tar", "-C", str(tmp_path / "root"), "-cf", str(tar), "."], check=True)
    token = a.token()
    creds = f"AWS:{token}"
    # An image in skopeo's directory layout: one 7 MiB layer (sent as S3 parts), its config.
    d = tmp_path / "dir"
    d.mkdir()
    blob = tar.read_bytes()
    layer_digest = hashlib.sha256(blob).hexdigest()
    (d / layer_digest).write_bytes(blob)
    config = ('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}'
              % layer_digest).encode()
    config_digest = hashlib.sha256(config).hexdigest()
    (d / config_digest).write_bytes(config)
    manifest = ('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
                '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},'
                '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}'
                % (config_digest, len(config), layer_digest, len(blob)))
    (d / "manifest.json").write_text(manifest)
    (d / "version").write_text("Directory Transport Version: 1.1\n")
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds,
                    f"dir:{d}", f"docker://{a.host}/app:v1"], check=True, capture_output=True)
    # skopeo compresses the layer on the way: what was pushed is what node A serves.
    pulled = {}
    for node, name in ((a, "a"), (b, "b"), (c, "c")):
        out = tmp_path / f"pulled-{name}"
        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--src-creds", creds,
                        f"docker://{node.host}/app:v1", f"dir:{out}"], check=True, capture_output=True)
        pulled[name] = {f.name: f.read_bytes() for f in out.iterdir()}
    assert pulled["b"] == pulled["a"] and pulled["c"] == pulled["a"]
    layers = [n for n, data in pulled["a"].items() if len(data) > 5 * MIB]
    assert len(layers) == 1 and hashlib.sha256(pulled["a"][layers[0]]).hexdigest() == layers[0]


def s3_client():
    """boto3 on the S3 server of BERTH_TEST_S3 (with its credentials, not Berth's)."""
    import boto3

    base, query = os.environ["BERTH_TEST_S3"].split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    return base[len("s3://"):], boto3.client(
        "s3", endpoint_url=params["endpoint"], region_name=params["region"],
        aws_access_key_id=params["access_key_id"], aws_secret_access_key=params["secret_access_key"],
        config=__import__("botocore.config").config.Config(s3={"addressing_style": "path"}))


def open_multipart_uploads(prefix):
    bucket, s3 = s3_client()
    try:
        listed = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"the S3 server cannot list multipart uploads ({e}); scripts/test-garage runs this on Garage")
    return [u["Key"] for u in listed.get("Uploads", [])]


def test_cancelled_and_abandoned_uploads_abort_their_multipart_uploads(tmp_path):
    prefix = "ab" + uuid.uuid4().hex[:10]
    node = Berth(str(tmp_path), extra_env={"BERTH_BLOBS": bucket_url(prefix), "BERTH_GC_INTERVAL_SECONDS": "1",
                                           "BERTH_GC_UPLOAD_AGE_SECONDS": "3"})
    try:
        node.client().create_repository(repositoryName="parts")
        s = requests.Session()
        s.auth = ("AWS", node.token())

        def start_with_a_part():
            r = s.post(f"{node.endpoint}/v2/parts/blobs/uploads/")
            path = r.headers["Location"]
            path = path[path.index("/v2/"):] if "://" in path else path
            r = s.patch(f"{node.endpoint}{path}", data=os.urandom(9 * MIB),
                        headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 202, r.text
            return path

        cancelled = start_with_a_part()
        assert len(open_multipart_uploads(prefix)) == 1
        assert s.delete(f"{node.endpoint}{cancelled}").status_code == 204
        assert open_multipart_uploads(prefix) == [], "a cancelled upload aborts its multipart upload"
        start_with_a_part()
        assert len(open_multipart_uploads(prefix)) == 1
        deadline = time.time() + 30
        while open_multipart_uploads(prefix) and time.time() < deadline:
            time.sleep(0.5)
        assert open_multipart_uploads(prefix) == [], "GC aborts an abandoned upload's multipart upload"
    finally:
        node.stop()
