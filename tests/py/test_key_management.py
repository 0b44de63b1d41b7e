"""Key management end to end: access keys deactivated, reactivated and deleted with the real
`aws iam` CLI and `berth admin`, revocation reaching SigV4, registry tokens (the Docker
engine) and presigned layer URLs; last use; the root's last key kept; the upgrade of a data
directory made by the release before the master keyring; master-key rotation under load and
its resumption after a `kill -9`."""
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import requests

from conftest import ACCOUNT_ID, KEY_ID, REGION, SECRET, Berth, berth_bin, push_image, unseal, single_node

pytestmark = single_node("it restarts and kills the server, reads and rewrites its SQLite database and keyring, and rotates keys over a node's admin socket")
from test_docker_flow import rootfs_tar

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "upgrade-0.1")


def aws_as(berth, key, secret, *args):
    """The AWS CLI with another principal's key; returns the CompletedProcess."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=REGION)
    env.pop("AWS_PROFILE", None)
    return subprocess.run(["aws", *args, "--endpoint-url", berth.endpoint, "--output", "json"],
                          capture_output=True, text=True, env=env)


def admin(berth, *args, check=True):
    p = subprocess.run([berth_bin(), "admin", *args, "--data-dir", os.path.join(berth.data_dir, "data")],
                       capture_output=True, text=True, env=dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT_ID))
    if check:
        assert p.returncode == 0, f"berth admin {' '.join(args)} failed: {p.stderr}"
    return p


def until(predicate, seconds):
    """Whether `predicate` holds within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def download_url(berth, key, secret, repo, digest):
    return berth.client(key=key, secret=secret).get_download_url_for_layer(
        repositoryName=repo, layerDigest=digest)["downloadUrl"]


def test_deactivating_a_key_revokes_sigv4_tokens_and_presigned_urls_until_reactivated(berth, docker, tmp_path):
    berth.aws("iam", "create-user", "--user-name", "dev")
    berth.aws("iam", "attach-user-policy", "--user-name", "dev",
              "--policy-arn", "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess")
    key = json.loads(berth.aws("iam", "create-access-key", "--user-name", "dev").stdout)["AccessKey"]
    kid, ksecret = key["AccessKeyId"], key["SecretAccessKey"]
    assert aws_as(berth, kid, ksecret, "ecr", "create-repository", "--repository-name", "rev").returncode == 0

    ref = f"{berth.host}/rev:v1"
    tar = tmp_path / "rootfs.tar"
    rootfs_tar(tar, "revocation\n")
    docker.run("import", str(tar), ref)
    password = aws_as(berth, kid, ksecret, "ecr", "get-login-password").stdout
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=password)
    docker.run("push", ref)
    layer = berth.client(key=kid, secret=ksecret).batch_get_image(
        repositoryName="rev", imageIds=[{"imageTag": "v1"}])["images"][0]
    layer = json.loads(layer["imageManifest"])["layers"][0]["digest"]
    url = download_url(berth, kid, ksecret, "rev", layer)
    assert "X-Berth-Credential=" + kid in url
    assert requests.get(url).status_code == 200

    def refused():
        ecr = aws_as(berth, kid, ksecret, "ecr", "describe-repositories")
        iam = aws_as(berth, kid, ksecret, "iam", "get-user")
        return ecr, iam

    berth.aws("iam", "update-access-key", "--user-name", "dev", "--access-key-id", kid, "--status", "Inactive")
    listed = json.loads(berth.aws("iam", "list-access-keys", "--user-name", "dev").stdout)["AccessKeyMetadata"]
    assert [k["Status"] for k in listed] == ["Inactive"]
    ecr, iam = refused()
    assert ecr.returncode != 0 and "UnrecognizedClientException" in ecr.stderr, ecr.stderr
    assert iam.returncode != 0 and "InvalidClientTokenId" in iam.stderr, iam.stderr
    assert requests.get(url).status_code == 401
    docker.run("rmi", ref)
    # Tokens are re-checked at most a second after they were last checked.
    started = time.monotonic()
    assert until(lambda: docker.run("pull", ref, check=False).returncode != 0, 2.0)
    assert time.monotonic() - started < 2.5

    berth.aws("iam", "update-access-key", "--user-name", "dev", "--access-key-id", kid, "--status", "Active")
    assert aws_as(berth, kid, ksecret, "ecr", "describe-repositories").returncode == 0
    assert until(lambda: docker.run("pull", ref, check=False).returncode == 0, 3.0)
    assert requests.get(url).status_code == 200

    # The same through `berth admin`, another process writing the database.
    admin(berth, "update-access-key", "dev", kid, "--status", "Inactive")
    assert "UnrecognizedClientException" in aws_as(berth, kid, ksecret, "ecr", "describe-repositories").stderr
    docker.run("rmi", ref)
    assert until(lambda: docker.run("pull", ref, check=False).returncode != 0, 2.0)
    assert requests.get(url).status_code == 401
    admin(berth, "update-access-key", "dev", kid, "--status", "Active")
    assert until(lambda: docker.run("pull", ref, check=False).returncode == 0, 3.0)
    admin(berth, "delete-access-key", "dev", kid)
    assert "UnrecognizedClientException" in aws_as(berth, kid, ksecret, "ecr", "describe-repositories").stderr
    assert requests.get(url).status_code == 401


def test_delete_scoping_quota_last_use_and_the_root_keeps_a_key(tmp_path):
    d = str(tmp_path)
    berth = Berth(d)
    try:
        # The root's own keys, reached without --user-name: a second one, then the quota.
        second = json.loads(berth.aws("iam", "create-access-key").stdout)["AccessKey"]
        third = berth.aws("iam", "create-access-key", check=False)
        assert third.returncode != 0 and "LimitExceeded" in third.stderr
        # `berth admin` is the operator's tool and may go past the quota (then undo it).
        extra = json.loads(admin(berth, "create-access-key", "root").stdout)["AccessKey"]["AccessKeyId"]
        admin(berth, "delete-access-key", "root", extra)

        never = json.loads(berth.aws("iam", "get-access-key-last-used", "--access-key-id", second["AccessKeyId"]).stdout)
        assert never["AccessKeyLastUsed"] == {"ServiceName": "N/A", "Region": "N/A"}

        berth.aws("iam", "create-user", "--user-name", "reader")
        berth.aws("iam", "attach-user-policy", "--user-name", "reader",
                  "--policy-arn", "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
        reader = json.loads(berth.aws("iam", "create-access-key", "--user-name", "reader").stdout)["AccessKey"]
        berth.aws("iam", "create-user", "--user-name", "other")
        assert aws_as(berth, reader["AccessKeyId"], reader["SecretAccessKey"],
                      "ecr", "describe-repositories").returncode == 0

        def last_used():
            out = json.loads(berth.aws("iam", "get-access-key-last-used",
                                       "--access-key-id", reader["AccessKeyId"]).stdout)
            return out if "LastUsedDate" in out["AccessKeyLastUsed"] else None
        assert until(lambda: last_used() is not None, 3.0), "the use is recorded behind the request"
        used = last_used()
        assert used["UserName"] == "reader"
        assert used["AccessKeyLastUsed"]["ServiceName"] == "ecr"
        assert used["AccessKeyLastUsed"]["Region"] == REGION

        # Another user's key named as someone else's, or a key of another account: not found.
        wrong_user = berth.aws("iam", "delete-access-key", "--user-name", "other",
                               "--access-key-id", reader["AccessKeyId"], check=False)
        assert wrong_user.returncode != 0 and "NoSuchEntity" in wrong_user.stderr
        assert f"The Access Key with id {reader['AccessKeyId']} cannot be found" in wrong_user.stderr
        other_account = json.loads(admin(berth, "create-account", "210987654321").stdout)["AccessKey"]
        for args in (["update-access-key", "--access-key-id", reader["AccessKeyId"], "--status", "Inactive"],
                     ["delete-access-key", "--access-key-id", KEY_ID],
                     ["get-access-key-last-used", "--access-key-id", reader["AccessKeyId"]]):
            p = aws_as(berth, other_account["AccessKeyId"], other_account["SecretAccessKey"], "iam", *args)
            assert p.returncode != 0 and "NoSuchEntity" in p.stderr, (args, p.stderr)
        expired = berth.aws("iam", "update-access-key", "--user-name", "reader", "--access-key-id",
                            reader["AccessKeyId"], "--status", "Expired", check=False)
        assert expired.returncode != 0 and "ValidationError" in expired.stderr

        # The root deletes the key it started with (the one in the environment), using its second.
        p = aws_as(berth, second["AccessKeyId"], second["SecretAccessKey"], "iam", "delete-access-key",
                   "--access-key-id", KEY_ID)
        assert p.returncode == 0, p.stderr
        assert "UnrecognizedClientException" in berth.aws("ecr", "describe-repositories", check=False).stderr
        # Its last active key is kept, whether deactivated or deleted.
        for args in (["update-access-key", "--access-key-id", second["AccessKeyId"], "--status", "Inactive"],
                     ["delete-access-key", "--access-key-id", second["AccessKeyId"]]):
            p = aws_as(berth, second["AccessKeyId"], second["SecretAccessKey"], "iam", *args)
            assert p.returncode != 0 and "DeleteConflict" in p.stderr, p.stderr
            assert "the account root must keep one active access key" in p.stderr.lower()
        refused = admin(berth, "update-access-key", "root", second["AccessKeyId"], "--status", "Inactive", check=False)
        assert refused.returncode != 0 and "DeleteConflict" in refused.stderr
    finally:
        berth.stop()

    # A restart with the deleted key still in the environment does not bring it back.
    berth = Berth(d)
    try:
        assert "UnrecognizedClientException" in berth.aws("ecr", "describe-repositories", check=False).stderr
        assert aws_as(berth, second["AccessKeyId"], second["SecretAccessKey"],
                      "ecr", "describe-repositories").returncode == 0
        # Forced through `berth admin`, the root may lose its last key; a start then still does
        # not bring the deleted one back.
        admin(berth, "delete-access-key", "root", second["AccessKeyId"], "--force")
        assert aws_as(berth, second["AccessKeyId"], second["SecretAccessKey"],
                      "ecr", "describe-repositories").returncode != 0
    finally:
        berth.stop()
    berth = Berth(d)
    try:
        assert "UnrecognizedClientException" in berth.aws("ecr", "describe-repositories", check=False).stderr
        log = open(os.path.join(d, "berth.log")).read()
        assert "was deleted; it is not brought back" in log
    finally:
        berth.stop()


def every_file(root, skip):
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if name in skip or not os.path.isfile(path):
                continue
            yield path


def test_upgrade_seals_the_old_secrets_and_keeps_keys_and_images(tmp_path):
    keys = json.load(open(os.path.join(FIXTURE, "keys.json")))
    d = str(tmp_path)
    shutil.copytree(os.path.join(FIXTURE, "data"), os.path.join(d, "data"))
    db = sqlite3.connect(f"file:{os.path.join(FIXTURE, 'data', 'meta.db')}?mode=ro&immutable=1", uri=True)
    token_key = db.execute("SELECT value FROM registry_secrets WHERE name = 'registry-token-hmac'").fetchone()[0]
    db.close()
    secrets = [keys["root"]["SecretAccessKey"].encode(), keys["deployer"]["SecretAccessKey"].encode()]
    forms = secrets + [token_key, token_key.hex().encode(), token_key.hex().upper().encode(),
                       base64.b64encode(token_key), base64.urlsafe_b64encode(token_key).rstrip(b"=")]
    assert any(secrets[0] in open(p, "rb").read() for p in every_file(os.path.join(d, "data"), ["admin-credentials"]))

    berth = Berth(d, extra_env={"BERTH_ACCOUNT_ID": keys["account"]})
    try:
        # The operator's copy of the root key is left alone, and is the only place it is in.
        assert secrets[0] in open(os.path.join(d, "data", "admin-credentials"), "rb").read()
        for path in every_file(os.path.join(d, "data"), ["admin-credentials", "berth.log"]):
            content = open(path, "rb").read()
            for form in forms:
                assert form not in content, f"{path} still holds a secret"
        assert oct(os.stat(os.path.join(d, "data", "master.key")).st_mode & 0o777) == "0o600"

        image = keys["image"]
        for who in ("root", "deployer"):
            ecr = berth.client(key=keys[who]["AccessKeyId"], secret=keys[who]["SecretAccessKey"])
            assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == [image["repository"]]
            token = base64.b64decode(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"])
            s = requests.Session()
            s.auth = ("AWS", token.decode().split(":", 1)[1])
            m = s.get(f"{berth.endpoint}/v2/{image['repository']}/manifests/{image['tag']}",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert m.status_code == 200 and "sha256:" + hashlib.sha256(m.content).hexdigest() == image["digest"]
            blob = s.get(f"{berth.endpoint}/v2/{image['repository']}/blobs/{image['layer']}")
            assert blob.status_code == 200 and "sha256:" + hashlib.sha256(blob.content).hexdigest() == image["layer"]
        # The environment's root key is not applied to an account whose root has a key.
        assert "UnrecognizedClientException" in berth.aws("ecr", "describe-repositories", check=False).stderr

        # A presigned URL of the old format (no issuing key), signed with the old key: refused.
        expires = int(time.time()) + 600
        msg = f"download\n{image['repository']}\n{image['layer']}\n{expires}".encode()
        sig = hmac.new(token_key, msg, hashlib.sha256).hexdigest()
        old = f"{berth.endpoint}/v2/{image['repository']}/blobs/{image['layer']}?X-Berth-Expires={expires}&X-Berth-Signature={sig}"
        assert requests.get(old).status_code == 401
        new = download_url(berth, keys["root"]["AccessKeyId"], keys["root"]["SecretAccessKey"],
                           image["repository"], image["layer"])
        assert requests.get(new).status_code == 200
    finally:
        berth.stop()
    # The token key survives restarts sealed, and opens to what it was.
    db = sqlite3.connect(os.path.join(d, "data", "meta.db"))
    sealed = db.execute("SELECT value FROM registry_secrets WHERE name = 'registry-token-hmac'").fetchone()[0]
    db.close()
    assert unseal(os.path.join(d, "data"), "registry-secret", "registry-token-hmac", sealed) == token_key


def sealed_versions(d):
    db = sqlite3.connect(os.path.join(d, "data", "meta.db"))
    try:
        rows = [r[0] for r in db.execute("SELECT sealed_secret FROM access_keys")]
        rows += [r[0].decode() for r in db.execute("SELECT value FROM registry_secrets")]
        # Blobs' data keys of AES256 repositories are sealed under the keyring too.
        rows += [r[0].decode() for r in db.execute("SELECT wrapped FROM blob_keys WHERE wrapping = 'AES256'")]
    finally:
        db.close()
    return sorted({r.split(":")[1] for r in rows})


def test_master_key_rotation_under_load_then_an_interrupted_rotation_resumes(tmp_path):
    d = str(tmp_path)
    slow = {"BERTH_MASTER_KEY_ROTATION_BATCH": "1", "BERTH_MASTER_KEY_ROTATION_PAUSE_MS": "40"}
    berth = Berth(d, extra_env=slow)
    users = [berth.create_user(f"u{i}", attach="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser")
             for i in range(8)]
    berth.client().create_repository(repositoryName="busy")
    assert sealed_versions(d) == ["v1"]
    failures, stop = [], threading.Event()

    def traffic(n):
        key, secret = users[n]
        i = 0
        while not stop.is_set():
            try:
                ecr = berth.client(key=key, secret=secret)
                ecr.describe_repositories(repositoryNames=["busy"])
                digest, _, layer = push_image(berth, "busy", f"t{n}-{i}", seed=f"{n}-{i}")
                r = requests.get(f"{berth.endpoint}/v2/busy/blobs/{layer}", auth=("AWS", berth.token(key, secret)))
                assert r.status_code == 200, r.status_code
            except Exception as e:  # noqa: BLE001 - every failure is reported
                failures.append(repr(e))
            i += 1

    threads = [threading.Thread(target=traffic, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        out = json.loads(admin(berth, "rotate-master-key", "--wait").stdout)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    # 9 access keys, the token key, and the data keys of every blob pushed before it ended.
    assert list(out["sealedByVersion"]) == ["2"] and out["sealedByVersion"]["2"] > 10, out
    assert out["rotationTarget"] is None and out["removableVersions"] == [1]
    assert sealed_versions(d) == ["v2"]
    assert [line.split(":")[0] for line in open(os.path.join(d, "data", "master.key")) if not line.startswith("#")] == ["1", "2"]

    # A slower rotation, killed part-way: the next start resumes it.
    berth.stop()
    berth = Berth(d, extra_env=dict(slow, BERTH_MASTER_KEY_ROTATION_PAUSE_MS="400"))
    started = json.loads(admin(berth, "rotate-master-key").stdout)
    assert started["rotationTarget"] == 3 and started["running"] is True
    time.sleep(1.0)
    berth.proc.send_signal(signal.SIGKILL)
    berth.proc.wait()
    berth.log.close()
    assert sealed_versions(d) == ["v2", "v3"], "part-way"
    # Resumed at full pace: the blobs' and manifests' data keys of the pushes above make the
    # secrets a few hundred.
    berth = Berth(d, extra_env={"BERTH_MASTER_KEY_ROTATION_BATCH": "100", "BERTH_MASTER_KEY_ROTATION_PAUSE_MS": "0"})
    try:
        assert until(lambda: json.loads(admin(berth, "master-key-status").stdout)["rotationTarget"] is None, 60)
        status = json.loads(admin(berth, "master-key-status").stdout)
        assert list(status["sealedByVersion"]) == ["3"] and status["sealedByVersion"]["3"] > 10, status
        assert status["removableVersions"] == [1, 2]
        assert sealed_versions(d) == ["v3"]
        for key, secret in users:
            assert berth.client(key=key, secret=secret).describe_repositories(repositoryNames=["busy"])
        assert berth.client(key=KEY_ID, secret=SECRET).describe_repositories()
    finally:
        berth.stop()


def test_rotation_needs_the_running_server_and_a_keyring_version_it_holds(berth):
    p = admin(berth, "rotate-master-key", "--to", "7", check=False)
    assert p.returncode != 0 and "holds no version 7" in p.stderr, p.stderr
    berth.stop()
    p = admin(berth, "rotate-master-key", check=False)
    assert p.returncode != 0 and "no berth server is running" in p.stderr, p.stderr
    keyring = open(os.path.join(berth.data_dir, "data", "master.key")).read()
    assert [line for line in keyring.splitlines() if not line.startswith("#")][0].startswith("1:")
    assert len([line for line in keyring.splitlines() if not line.startswith("#")]) == 1, "left alone"


def test_sighup_reloads_the_keyring_and_new_values_use_the_newest_version(berth):
    data = os.path.join(berth.data_dir, "data")
    path = os.path.join(data, "master.key")
    original = open(path).read()
    new_key = base64.b64encode(os.urandom(32)).decode()
    open(path, "a").write(f"2:{new_key}\n")
    berth.proc.send_signal(signal.SIGHUP)

    def sealed_with_v2():
        key = json.loads(berth.aws("iam", "create-access-key").stdout)["AccessKey"]
        db = sqlite3.connect(os.path.join(data, "meta.db"))
        sealed = db.execute("SELECT sealed_secret FROM access_keys WHERE access_key_id = ?",
                            (key["AccessKeyId"],)).fetchone()[0]
        db.close()
        berth.aws("iam", "delete-access-key", "--access-key-id", key["AccessKeyId"])
        return sealed.startswith("sealed:v2:")
    assert until(sealed_with_v2, 5.0)
    # A file that lost a version still in use is refused; the keyring in use stays.
    open(path, "w").write(original)
    berth.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "no longer holds master key version 2" in open(os.path.join(berth.data_dir, "berth.log")).read()
    assert berth.client().describe_repositories()["repositories"] == []
