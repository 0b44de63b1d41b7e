"""Replication across regions (issue 17): two deployments on loopback, us-east-1 and
eu-west-1, paired with `berth admin add-replication-peer`; images pushed to one are sent
over the other's replication route and pulled there with the real Docker engine and skopeo.
Also: what the route refuses, and transfers that survive `kill -9` of either side."""
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time

import pytest
import requests

import conftest
from conftest import ACCOUNT_ID, KEY_ID, SECRET, Berth, free_port, push_image, single_node
from conftest import replication_config as config, replication_rule as rule

EU = "eu-west-1"


def pair(us, eu):
    """Peers both ways, as the README says: one side's token to the other, and back."""
    out = us.admin("add-replication-peer", "--region", EU, "--endpoint", eu.endpoint)
    assert out["Peer"]["Region"] == EU and out["PeerToken"].startswith("berthpeer1.")
    back = eu.admin("add-replication-peer", "--region", "us-east-1", "--token", out["PeerToken"])
    assert back["Peer"]["AccessKeyId"] == out["Peer"]["AccessKeyId"]
    assert back["Peer"]["Accounts"] == [ACCOUNT_ID]
    us.admin("add-replication-peer", "--region", EU, "--token", back["PeerToken"])
    return out["PeerToken"]


ROOT_ENV = ("BERTH_ROOT_ACCESS_KEY_ID", "BERTH_ROOT_SECRET_ACCESS_KEY")


def share_identities(us, eu, tmp_path):
    """us-east-1's identities of the account, imported into eu-west-1 (started with a root key
    of its own): afterwards the same access keys work in both regions."""
    exported = us.admin("export-identities", "--output", str(tmp_path / "identities.json"))
    assert exported["Account"] == ACCOUNT_ID and exported["AccessKeys"] >= 1
    assert oct(os.stat(tmp_path / "identities.json").st_mode & 0o777) == "0o600"
    assert SECRET not in (tmp_path / "identities.json").read_text(), "secrets travel sealed"
    return eu.admin("import-identities", "--input", str(tmp_path / "identities.json"),
                    "--transport-key", exported["TransportKey"])


@pytest.fixture
def regions(tmp_path):
    (tmp_path / "us").mkdir()
    (tmp_path / "eu").mkdir()
    us = Berth(str(tmp_path / "us"))
    eu = Berth(str(tmp_path / "eu"), extra_env={"BERTH_REGION": EU}, drop_env=ROOT_ENV)
    try:
        share_identities(us, eu, tmp_path)
        pair(us, eu)
        yield us, eu
    finally:
        us.stop()
        eu.stop()


def wait_replicated(client, repo, digest, timeout=90):
    """Two deployments take longer to start replicating than one: 90 s unless given."""
    return conftest.wait_replicated(client, repo, digest, timeout=timeout)


def manifest_of(berth, repo, reference, accept="application/vnd.oci.image.manifest.v1+json"):
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    return s.get(f"{berth.endpoint}/v2/{repo}/manifests/{reference}", headers={"Accept": accept})


def layer_tar(path, name, content):
    with tarfile.open(path, "w") as t:
        data = content.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))


def test_a_docker_push_in_one_region_is_pulled_from_the_other_with_the_same_key(regions, docker, tmp_path):
    us, eu = regions
    us.client().put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID))))
    us.aws("ecr", "create-repository", "--repository-name", "my-app")
    # A two-layer image, built from scratch by the Docker engine.
    layer_tar(tmp_path / "one.tar", "etc/one.conf", "one\n")
    layer_tar(tmp_path / "two.tar", "etc/two.conf", "two\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nADD one.tar /\nADD two.tar /\n")
    ref = f"{us.host}/my-app:v1.0"
    p = subprocess.run(["docker", "--config", os.path.join(docker.dir, "client"), "-H", f"unix://{docker.sock}",
                        "build", "-q", "-t", ref, str(tmp_path)], capture_output=True, text=True,
                       env=dict(os.environ, DOCKER_BUILDKIT="0"))
    assert p.returncode == 0, p.stderr
    for b in (us, eu):
        docker.run("login", "--username", "AWS", "--password-stdin", b.host, stdin=b.aws("ecr", "get-login-password").stdout)
    assert "digest: sha256:" in docker.run("push", ref).stdout
    digest = us.client().describe_images(repositoryName="my-app")["imageDetails"][0]["imageDigest"]
    statuses = wait_replicated(us.client(), "my-app", digest)
    assert statuses == [{"region": EU, "registryId": ACCOUNT_ID, "status": "COMPLETE"}], statuses
    # The same image, by the same tag, from eu-west-1's own registry, with the same access key.
    there = f"{eu.host}/my-app:v1.0"
    pulled = docker.run("pull", there)
    assert digest in pulled.stdout, pulled.stdout
    layers = json.loads(docker.run("inspect", there).stdout)[0]["RootFS"]["Layers"]
    assert len(layers) == 2
    eu_image = eu.client().describe_images(repositoryName="my-app")["imageDetails"][0]
    assert eu_image["imageDigest"] == digest and eu_image["imageTags"] == ["v1.0"]
    # No chaining: eu-west-1 does not send it anywhere (it has no rules), and its status of the
    # replica lists nothing.
    assert eu.client().describe_image_replication_status(
        repositoryName="my-app", imageId={"imageDigest": digest})["replicationStatuses"] == []


def test_filters_apply_a_delete_stays_at_the_source_and_an_old_image_waits(regions):
    us, eu = regions
    a = us.client()
    for repo in ("team/app", "other/app"):
        a.create_repository(repositoryName=repo)
    old = push_image(us, "team/app", "old", 0)[0]
    a.put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID), prefixes=["team/"])))
    d1 = push_image(us, "team/app", "v1", 1)[0]
    d2 = push_image(us, "other/app", "v1", 2)[0]
    assert wait_replicated(a, "team/app", d1)[0]["status"] == "COMPLETE"
    assert a.describe_image_replication_status(repositoryName="other/app", imageId={"imageDigest": d2})[
        "replicationStatuses"] == []
    e = eu.client()
    assert [i["imageDigest"] for i in e.describe_images(repositoryName="team/app")["imageDetails"]] == [d1]
    with pytest.raises(e.exceptions.RepositoryNotFoundException):
        e.describe_images(repositoryName="other/app")
    # An image pushed before the configuration existed stays where it is...
    assert manifest_of(eu, "team/app", old).status_code == 404
    # ...unless it is restored from the archive after it (as ECR does).
    a.update_image_storage_class(repositoryName="team/app", imageId={"imageDigest": old}, targetStorageClass="ARCHIVE")
    a.update_image_storage_class(repositoryName="team/app", imageId={"imageDigest": old}, targetStorageClass="STANDARD")
    assert wait_replicated(a, "team/app", old)[0]["status"] == "COMPLETE"
    assert manifest_of(eu, "team/app", "old").headers["Docker-Content-Digest"] == old
    # A delete at the source is not replicated.
    a.batch_delete_image(repositoryName="team/app", imageIds=[{"imageDigest": d1}])
    assert manifest_of(eu, "team/app", "v1").status_code == 200


def test_identities_exported_from_one_region_work_in_the_other(tmp_path):
    (tmp_path / "us").mkdir()
    (tmp_path / "eu").mkdir()
    us = Berth(str(tmp_path / "us"))
    eu = Berth(str(tmp_path / "eu"), extra_env={"BERTH_REGION": EU}, drop_env=ROOT_ENV)
    try:
        from botocore.exceptions import ClientError
        with pytest.raises(ClientError):
            eu.client().describe_repositories()
        read_only = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ecr:DescribeRepositories"], "Resource": "*"}]}
        key, secret = us.create_user("ci", policy=read_only)
        us.admin("create-group", "builders")
        us.admin("add-user-to-group", "builders", "ci")
        us.admin("create-policy", "pushers", "-", stdin=json.dumps(read_only))
        report = share_identities(us, eu, tmp_path)
        assert report == {"UsersCreated": 1, "GroupsCreated": 1, "PoliciesCreated": 1, "PoliciesUpdated": 0,
                          "AccessKeysAdded": 2, "AccessKeysSkipped": []}, report
        assert eu.client().describe_repositories()["repositories"] == []
        ci = eu.client(key=key, secret=secret)
        assert ci.describe_repositories()["repositories"] == []
        with pytest.raises(ClientError) as e:
            ci.create_repository(repositoryName="not-allowed")
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"
        user = eu.admin("show-user", "ci")
        assert user["Groups"] == ["builders"] and user["PolicyNames"] == ["inline"]
        assert user["User"]["UserId"] == us.admin("show-user", "ci")["User"]["UserId"]
        # Again: nothing new; a key deactivated at the source follows; a key deleted here stays gone.
        us.admin("update-access-key", "ci", key, "--status", "Inactive")
        assert share_identities(us, eu, tmp_path)["AccessKeysAdded"] == 0
        with pytest.raises(ClientError):
            ci.describe_repositories()
        eu.admin("delete-access-key", "ci", key)
        assert share_identities(us, eu, tmp_path)["AccessKeysSkipped"] == [key]
        # A file changed on the way (a user's key made the root's) is refused as a whole.
        exported = us.admin("export-identities", "--output", str(tmp_path / "changed.json"))
        doc = json.loads((tmp_path / "changed.json").read_text())
        doc["accessKeys"] = [dict(k, user="root") for k in doc["accessKeys"]]
        (tmp_path / "changed.json").write_text(json.dumps(doc))
        p = subprocess.run([__import__("conftest").berth_bin(), "admin", "import-identities", "--input", str(tmp_path / "changed.json"),
                            "--transport-key", exported["TransportKey"], "--data-dir", os.path.join(eu.data_dir, "data")],
                           capture_output=True, text=True, env=dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT_ID, BERTH_REGION=EU, **eu.command_env))
        assert p.returncode != 0 and "was changed" in p.stderr, p.stderr
        # A wrong transport key changes nothing.
        us.admin("export-identities", "--output", str(tmp_path / "again.json"))
        p = subprocess.run([__import__("conftest").berth_bin(), "admin", "import-identities", "--input", str(tmp_path / "again.json"),
                            "--transport-key", __import__("base64").b64encode(os.urandom(32)).decode(),
                            "--data-dir", os.path.join(eu.data_dir, "data")],
                           capture_output=True, text=True, env=dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT_ID, BERTH_REGION=EU, **eu.command_env))
        assert p.returncode != 0 and "transport key" in p.stderr, p.stderr
    finally:
        us.stop()
        eu.stop()


def signed(url, method, key, secret, region, service="berth-replication", body=b""):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=url, data=body,
                     headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    SigV4Auth(Credentials(key, secret), service, region).add_auth(req)
    return requests.request(method, url, headers=dict(req.headers), data=body)


def test_only_the_peers_credential_opens_the_replication_route(regions):
    us, eu = regions
    url = f"{eu.endpoint}/berth/replication/v1/repository?source={ACCOUNT_ID}&registry={ACCOUNT_ID}&repository=x"
    # Unsigned; signed with the account root's own key (for the route's service or for ECR).
    for r in (requests.post(url), signed(url, "POST", KEY_ID, SECRET, EU), signed(url, "POST", KEY_ID, SECRET, EU, "ecr")):
        assert r.status_code == 403 and r.json()["failureCode"] == "PEER_REFUSED", r.text
    # The peer's credential works, only for the accounts the peer holds and registries served here.
    token = json.loads(__import__("base64").urlsafe_b64decode(
        us.admin("add-replication-peer", "--region", EU)["PeerToken"].split(".", 1)[1] + "=="))
    key, secret = token["accessKeyId"], token["secretAccessKey"]
    assert signed(url, "POST", key, secret, EU).status_code == 200
    assert signed(url, "POST", key, secret, "us-east-1").status_code == 403, "signed for another region"
    foreign = url.replace(f"source={ACCOUNT_ID}", "source=555555555555")
    r = signed(foreign, "POST", key, secret, EU)
    assert r.status_code == 403 and r.json()["failureCode"] == "REPLICATION_NOT_AUTHORIZED", r.text
    unserved = url.replace(f"registry={ACCOUNT_ID}", "registry=555555555555")
    r = signed(unserved, "POST", key, secret, EU)
    assert r.json() == {"failureCode": "DESTINATION_REGISTRY_NOT_FOUND", "retry": False,
                        "message": "registry 555555555555 is not served in eu-west-1"}
    # An ordinary API call with the peer's key is refused: it belongs to no user.
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as e:
        eu.client(key=key, secret=secret).describe_repositories()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    # A region with no peer cannot be a destination; removing the peer refuses its key at once.
    with pytest.raises(ClientError) as e:
        us.client().put_replication_configuration(replicationConfiguration=config(rule(("ap-south-1", ACCOUNT_ID))))
    assert "region 'ap-south-1'" in e.value.response["Error"]["Message"]
    eu.admin("remove-replication-peer", "--region", "us-east-1")
    assert signed(url, "POST", key, secret, EU).json()["failureCode"] == "PEER_REFUSED"


def push_big_image(berth, repo):
    """An image with one 64 MiB layer pushed as `repo:v1`; returns (its digest, the layer)."""
    layer = os.urandom(64 << 20)
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    for data in (layer, cfg):
        assert s.post(f"{berth.endpoint}/v2/{repo}/blobs/uploads/?digest={sha(data)}", data=data).status_code == 201
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": len(layer)}]}).encode()
    r = s.put(f"{berth.endpoint}/v2/{repo}/manifests/v1", data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], layer


def metric(port, name):
    text = requests.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


@single_node("it kills and restarts both deployments' processes")
def test_a_transfer_survives_kill_9_of_either_side(tmp_path):
    (tmp_path / "us").mkdir()
    (tmp_path / "eu").mkdir()
    metrics_port, eu_port = free_port(), free_port()
    # Slowed to 8 MiB/s, so that the 64 MiB layer is provably part-way when the destination dies.
    us_env = {"BERTH_METRICS_LISTEN": f"127.0.0.1:{metrics_port}", "BERTH_REPLICATION_MAX_BYTES_PER_SECOND": str(8 << 20)}
    us = Berth(str(tmp_path / "us"), extra_env=us_env)
    eu_env = {"BERTH_REGION": EU}
    eu = Berth(str(tmp_path / "eu"), extra_env=eu_env, listen=f"127.0.0.1:{eu_port}")
    try:
        pair(us, eu)
        a = us.client()
        a.create_repository(repositoryName="big")
        a.put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID))))
        digest, layer = push_big_image(us, "big")
        layer_digest = sha(layer)
        deadline = time.time() + 30
        while metric(metrics_port, "berth_replication_bytes_sent_total") < 20 << 20:
            assert time.time() < deadline, "the transfer did not start"
            time.sleep(0.1)
        eu.proc.send_signal(signal.SIGKILL)
        eu.proc.wait()
        eu.log.close()
        time.sleep(0.5)  # the part in flight fails: nothing more is counted
        sent_before = metric(metrics_port, "berth_replication_bytes_sent_total")
        assert 0 < sent_before < 64 << 20, sent_before
        eu = Berth(str(tmp_path / "eu"), extra_env=eu_env, listen=f"127.0.0.1:{eu_port}")
        assert wait_replicated(a, "big", digest, timeout=120)[0]["status"] == "COMPLETE"
        # At least the first 16 MiB part was acknowledged before the kill: the rest, and no
        # more, is sent again (a transfer started over would send all 64 MiB again).
        again = metric(metrics_port, "berth_replication_bytes_sent_total") - sent_before
        assert 0 < again <= (64 << 20) - (16 << 20), f"resumed, not sent again whole: {again} bytes after the restart"
        got = manifest_of(eu, "big", "v1")
        assert got.status_code == 200 and got.headers["Docker-Content-Digest"] == digest
        e = requests.Session()
        e.auth = ("AWS", eu.token())
        blob = e.get(f"{eu.endpoint}/v2/big/blobs/{layer_digest}")
        assert blob.status_code == 200 and blob.content == layer, "bit-identical"

        # Jobs queued while the destination is down, then the source killed: after both are
        # back, they finish.
        eu.stop()
        queued = [push_image(us, "big", f"q{i}", 100 + i)[0] for i in range(3)]
        time.sleep(1)
        us.proc.send_signal(signal.SIGKILL)
        us.proc.wait()
        us.log.close()
        eu = Berth(str(tmp_path / "eu"), extra_env=eu_env, listen=f"127.0.0.1:{eu_port}")
        us = Berth(str(tmp_path / "us"), extra_env=us_env)
        a = us.client()
        for d in queued:
            assert wait_replicated(a, "big", d, timeout=120)[0]["status"] == "COMPLETE"
            assert manifest_of(eu, "big", d).status_code == 200
    finally:
        us.stop()
        eu.stop()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_layout(path, platforms):
    """An OCI image layout holding an index of one small image per platform, tagged v1;
    returns (index digest, child digests)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data):
        (blobs / sha(data).split(":")[1]).write_bytes(data)
        return {"digest": sha(data), "size": len(data)}

    children = []
    for arch in platforms:
        cfg = put(json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
        layer = put(os.urandom(40_000))
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **cfg),
                        "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **layer)]}).encode()
        children.append(dict(mediaType="application/vnd.oci.image.manifest.v1+json",
                             platform={"architecture": arch, "os": "linux"}, **put(m)))
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": children}).encode()
    desc = put(index)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        dict(mediaType="application/vnd.oci.image.index.v1+json", annotations={"org.opencontainers.image.ref.name": "v1"}, **desc)]}))
    return desc["digest"], [c["digest"] for c in children]


def push_referrer(berth, repo, subject, subject_size, kind, payload):
    """An artifact (a signature, an SBOM) whose subject is `subject`; returns its digest."""
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    empty = b"{}"
    for data in (empty, payload):
        assert s.post(f"{berth.endpoint}/v2/{repo}/blobs/uploads/?digest={sha(data)}", data=data).status_code == 201
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "artifactType": kind,
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(empty), "size": 2},
                    "layers": [{"mediaType": "application/octet-stream", "digest": sha(payload), "size": len(payload)}],
                    "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": subject, "size": subject_size}}).encode()
    r = s.put(f"{berth.endpoint}/v2/{repo}/manifests/{sha(m)}", data=m,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return sha(m)


def test_a_multi_arch_image_and_its_referrers_arrive_whole(regions, tmp_path):
    us, eu = regions
    a = us.client()
    a.create_repository(repositoryName="multi")
    index, children = oci_layout(tmp_path / "layout", ["amd64", "arm64"])
    size = len((tmp_path / "layout" / "blobs" / "sha256" / index.split(":")[1]).read_bytes())
    # Two signatures and an SBOM, pushed before the configuration exists: they go with the image.
    referrers = {push_referrer(us, "multi", index, size, "application/vnd.dev.cosign.artifact.sig.v1+json", b"sig-%d" % i)
                 for i in range(2)}
    a.put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID))))
    # (Referrers can be pushed before their subject: the index comes last.)
    p = subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                        "--dest-creds", f"AWS:{us.token()}", f"oci:{tmp_path / 'layout'}:v1", f"docker://{us.host}/multi:v1"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    referrers.add(push_referrer(us, "multi", index, size, "application/spdx+json", b'{"spdxVersion": "SPDX-2.3"}'))
    assert wait_replicated(a, "multi", index)[0]["status"] == "COMPLETE"
    out = tmp_path / "from-eu"
    p = subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                        "--src-creds", f"AWS:{eu.token()}", f"docker://{eu.host}/multi:v1", f"oci:{out}:v1"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == index
    for child in children:
        assert (out / "blobs" / "sha256" / child.split(":")[1]).exists()
    s = requests.Session()
    s.auth = ("AWS", eu.token())
    for _ in range(100):
        got = s.get(f"{eu.endpoint}/v2/multi/referrers/{index}").json()["manifests"]
        if {m["digest"] for m in got} == referrers:
            break
        time.sleep(0.2)
    assert {m["digest"] for m in got} == referrers, got


def test_an_immutable_tag_at_the_destination_stays_and_the_event_says_so(regions):
    from conftest import berth_api

    us, eu = regions
    e = eu.client()
    e.create_repository(repositoryName="imm", imageTagMutability="IMMUTABLE")
    theirs = push_image(eu, "imm", "v1", 1)[0]
    a = us.client()
    a.create_repository(repositoryName="imm")
    a.put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID))))
    ours = push_image(us, "imm", "v1", 2)[0]
    status = wait_replicated(a, "imm", ours)[0]
    assert status == {"region": EU, "registryId": ACCOUNT_ID, "status": "COMPLETE"}, status
    assert manifest_of(eu, "imm", "v1").headers["Docker-Content-Digest"] == theirs
    assert manifest_of(eu, "imm", ours).status_code == 200, "the replica, by digest"
    time.sleep(2.5)  # (a retry would show as another attempt and event)
    code, out = berth_api(us, "ListReplicationEvents", {"repositoryName": "imm"})
    assert code == 200, out
    [event] = out["events"]
    assert event["imageDigest"] == ours and event["status"] == "COMPLETE"
    assert event["imageTags"] == ["v1"] and event["droppedTags"] == ["v1"]
    cli = json.loads(us.cli("replication", "events", "--repository", "imm").stdout)
    assert [(x["digest"], x["droppedTags"]) for x in cli] == [(ours, ["v1"])]


def test_tag_filters_and_exact_names_narrow_a_rule_and_a_backfill_sends_the_rest(regions):
    from conftest import berth_api

    us, eu = regions
    a = us.client()
    for repo in ("prod/api", "prod/apis", "dev/api"):
        a.create_repository(repositoryName=repo)
    before = {repo: push_image(us, repo, "v0", i)[0] for i, repo in enumerate(("prod/api", "prod/apis", "dev/api"))}
    a.put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID), prefixes=["dev/"])))
    code, out = berth_api(us, "PutReplicationRuleExtensions",
                          {"ruleIndex": 0, "repositoryNames": ["prod/api"], "tagFilters": ["v*", "release-*"]})
    assert code == 200, out
    got = out["replicationConfiguration"]["rules"][0]
    assert got["berthRepositoryNames"] == ["prod/api"] and got["berthTagFilters"] == ["v*", "release-*"]
    # ECR's operations never show them; a put of the same rule through ECR's keeps them.
    assert a.describe_registry()["replicationConfiguration"] == config(rule((EU, ACCOUNT_ID), prefixes=["dev/"]))
    a.put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID), prefixes=["dev/"])))
    assert berth_api(us, "GetReplicationConfiguration", {})[1]["replicationConfiguration"]["rules"][0] == got
    code, out = berth_api(us, "PutReplicationRuleExtensions", {"ruleIndex": 3, "tagFilters": ["v*"]})
    assert code == 400 and out["__type"] == "InvalidParameterException", out

    api = push_image(us, "prod/api", "v1", 10)[0]
    nightly = push_image(us, "prod/api", "nightly", 11)[0]
    apis = push_image(us, "prod/apis", "v1", 12)[0]
    dev = push_image(us, "dev/api", "v1", 13)[0]
    assert wait_replicated(a, "prod/api", api)[0]["status"] == "COMPLETE"
    assert wait_replicated(a, "dev/api", dev)[0]["status"] == "COMPLETE"
    for repo, d in (("prod/api", nightly), ("prod/apis", apis)):
        assert a.describe_image_replication_status(repositoryName=repo, imageId={"imageDigest": d})[
            "replicationStatuses"] == [], repo
    assert manifest_of(eu, "prod/api", "v1").status_code == 200
    assert manifest_of(eu, "prod/api", nightly).status_code == 404
    e = eu.client()
    with pytest.raises(e.exceptions.RepositoryNotFoundException):
        e.describe_repositories(repositoryNames=["prod/apis"])

    # What was pushed before the rules: only a backfill sends it, as the rules take it now.
    assert manifest_of(eu, "prod/api", before["prod/api"]).status_code == 404
    out = json.loads(us.cli("replication", "backfill", "--wait").stdout)
    assert out["queued"] == 2 and out["complete"] == 2 and out["waiting"] == 0, out
    assert {(j["repository"], j["digest"]) for j in out["jobs"]} == {
        ("prod/api", before["prod/api"]), ("dev/api", before["dev/api"])}
    for repo in ("prod/api", "dev/api"):
        assert manifest_of(eu, repo, "v0").headers["Docker-Content-Digest"] == before[repo]
    assert json.loads(us.cli("replication", "backfill").stdout)["queued"] == 0, "nothing left to send"


def test_a_replica_is_sealed_by_the_destination_regions_settings(regions):
    """From a KMS repository of us-east-1: an AES256 replica in eu-west-1 (no template: the
    blob is opened at the source and sealed again there), then a KMS one under eu-west-1's own
    key (its REPLICATION template); that key disabled → FAILED with KMS_KEY_UNAVAILABLE."""
    us, eu = regions
    a, e = us.client(), eu.client()
    us_key = us.client("kms").create_key(Description="source")["KeyMetadata"]
    for name in ("plain/app", "sealed/app"):
        a.create_repository(repositoryName=name, encryptionConfiguration={"encryptionType": "KMS", "kmsKey": us_key["Arn"]})
    eu_kms = eu.client("kms")
    eu_key = eu_kms.create_key(Description="destination")["KeyMetadata"]
    assert ":eu-west-1:" in eu_key["Arn"]
    e.create_repository_creation_template(prefix="sealed", appliedFor=["REPLICATION"],
                                          encryptionConfiguration={"encryptionType": "KMS", "kmsKey": eu_key["Arn"]})
    a.put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID))))

    d1, _, layer1 = push_image(us, "plain/app", "v1", 1)
    assert wait_replicated(a, "plain/app", d1)[0]["status"] == "COMPLETE"
    assert e.describe_repositories(repositoryNames=["plain/app"])["repositories"][0]["encryptionConfiguration"] == {
        "encryptionType": "AES256"}, "never the source's key"
    d2, _, layer2 = push_image(us, "sealed/app", "v1", 2)
    assert wait_replicated(a, "sealed/app", d2)[0]["status"] == "COMPLETE"
    assert e.describe_repositories(repositoryNames=["sealed/app"])["repositories"][0]["encryptionConfiguration"] == {
        "encryptionType": "KMS", "kmsKey": eu_key["Arn"]}
    s = requests.Session()
    s.auth = ("AWS", eu.token())
    for repo, d, layer in (("plain/app", d1, layer1), ("sealed/app", d2, layer2)):
        assert manifest_of(eu, repo, "v1").headers["Docker-Content-Digest"] == d
        blob = s.get(f"{eu.endpoint}/v2/{repo}/blobs/{layer}")
        assert blob.status_code == 200 and sha(blob.content) == layer

    eu_kms.disable_key(KeyId=eu_key["KeyId"])
    d3 = push_image(us, "sealed/app", "v2", 3)[0]
    assert wait_replicated(a, "sealed/app", d3)[0] == {
        "region": EU, "registryId": ACCOUNT_ID, "status": "FAILED", "failureCode": "KMS_KEY_UNAVAILABLE"}
    eu_kms.enable_key(KeyId=eu_key["KeyId"])
    with pytest.raises(e.exceptions.ImageNotFoundException):
        e.describe_images(repositoryName="sealed/app", imageIds=[{"imageDigest": d3}])


@pytest.mark.skipif(not __import__("conftest").CLUSTER, reason="the cluster run's: it kills the node holding a job")
def test_a_job_of_a_killed_node_is_finished_by_another(tmp_path):
    """Both regions as three nodes on PostgreSQL + S3; the node of us-east-1 running a slowed
    64 MiB replication is killed with `kill -9`: another node takes the job over once its claim
    is no longer renewed, and the replica arrives whole."""
    from conftest import _psql

    (tmp_path / "us").mkdir()
    (tmp_path / "eu").mkdir()
    us = Berth(str(tmp_path / "us"), extra_env={"BERTH_REPLICATION_MAX_BYTES_PER_SECOND": str(4 << 20)})
    eu = Berth(str(tmp_path / "eu"), extra_env={"BERTH_REGION": EU})
    try:
        pair(us, eu)
        a = us.client()
        a.create_repository(repositoryName="big")
        a.put_replication_configuration(replicationConfiguration=config(rule((EU, ACCOUNT_ID))))
        digest, layer = push_big_image(us, "big")
        db = us.cluster.admin_url.rsplit("/", 1)[0] + "/" + us.cluster.database
        deadline = time.time() + 30
        while not (holder := _psql(db, f"SELECT claimed_by FROM replication_jobs WHERE digest = '{digest}'")):
            assert time.time() < deadline, "no node claimed the job"
            time.sleep(0.2)
        time.sleep(3)  # part-way: a few MiB of 64 sent
        nodes = [open(os.path.join(d, "node-id")).read().strip() for d in us.cluster.dirs]
        victim = nodes.index(holder)
        us.cluster.procs[victim].send_signal(signal.SIGKILL)
        us.cluster.procs[victim].wait()
        assert wait_replicated(a, "big", digest, timeout=180)[0]["status"] == "COMPLETE"
        finisher = _psql(db, f"SELECT claimed_by FROM replication_jobs WHERE digest = '{digest}'")
        assert finisher == "", "finished and released"
        e = requests.Session()
        e.auth = ("AWS", eu.token())
        blob = e.get(f"{eu.endpoint}/v2/big/blobs/{sha(layer)}")
        assert blob.status_code == 200 and blob.content == layer
    finally:
        us.stop()
        eu.stop()


def until(check, timeout=60):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def test_deletes_and_tag_removals_are_propagated_where_a_rule_says_so(regions):
    from conftest import berth_api

    us, eu = regions
    a = us.client()
    for repo in ("mirror/app", "kept/app"):
        a.create_repository(repositoryName=repo)
    a.put_replication_configuration(replicationConfiguration=config(
        rule((EU, ACCOUNT_ID), prefixes=["mirror/"]), rule((EU, ACCOUNT_ID), prefixes=["kept/"])))
    code, out = berth_api(us, "PutReplicationRuleExtensions", {"ruleIndex": 0, "propagateDeletes": True})
    assert code == 200 and out["replicationConfiguration"]["rules"][0]["berthPropagateDeletes"] is True, out
    assert "berthPropagateDeletes" not in out["replicationConfiguration"]["rules"][1]
    d, manifest, _ = push_image(us, "mirror/app", "v1", 1)
    assert wait_replicated(a, "mirror/app", d)[0]["status"] == "COMPLETE"
    s = requests.Session()
    s.auth = ("AWS", us.token())
    r = s.put(f"{us.endpoint}/v2/mirror/app/manifests/stable", data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201
    assert wait_replicated(a, "mirror/app", d)[0]["status"] == "COMPLETE"
    assert manifest_of(eu, "mirror/app", "stable").headers["Docker-Content-Digest"] == d
    kept = push_image(us, "kept/app", "v1", 2)[0]
    assert wait_replicated(a, "kept/app", kept)[0]["status"] == "COMPLETE"

    # A tag removed at the source (/v2/ DELETE by tag) goes at the destination; the image stays.
    assert s.delete(f"{us.endpoint}/v2/mirror/app/manifests/stable").status_code == 202
    until(lambda: manifest_of(eu, "mirror/app", "stable").status_code == 404)
    assert manifest_of(eu, "mirror/app", "v1").headers["Docker-Content-Digest"] == d
    # The image deleted at the source (BatchDeleteImage) goes at the destination.
    a.batch_delete_image(repositoryName="mirror/app", imageIds=[{"imageDigest": d}])
    until(lambda: manifest_of(eu, "mirror/app", d).status_code == 404)
    # Where the rule does not propagate deletes, as in ECR, the replica stays.
    a.batch_delete_image(repositoryName="kept/app", imageIds=[{"imageDigest": kept}])
    time.sleep(3)
    assert manifest_of(eu, "kept/app", kept).status_code == 200
    # Each removal is an event.
    _, out = berth_api(us, "ListReplicationEvents", {"repositoryName": "mirror/app"})
    assert [(e["action"], e["status"], e["imageTags"]) for e in out["events"]][-2:] == [
        ("UNTAG", "COMPLETE", ["stable"]), ("DELETE", "COMPLETE", [])], out
