"""Three nodes on PostgreSQL + S3 behind nginx (conftest.Cluster), in what only a cluster can
get wrong: two nodes racing one immutable tag, a node killed with `kill -9` while four pushes
are part-way through, GC running on one node while pushes and deletes go through the others,
and clients told apart by their address through nginx."""
import hashlib
import json
import os
import signal
import tempfile
import threading
import time

import pytest
import requests

from conftest import ACCOUNT_ID, Berth, push_image, single_node
from test_proxy import session_from

pytestmark = single_node("it starts its own cluster")

MIB = 1024 * 1024


@pytest.fixture
def cluster():
    with tempfile.TemporaryDirectory() as d:
        b = Berth(d, cluster=True, extra_env={"BERTH_GC_INTERVAL_SECONDS": "2", "BERTH_GC_GRACE_SECONDS": "4",
                                              "BERTH_SCHEDULER_LEASE_SECONDS": "5"})
        yield b
        b.stop()


def session(token):
    s = requests.Session()
    s.auth = ("AWS", token)
    return s


def path_of(location):
    return location[location.index("/v2/"):] if "://" in location else location


def blob_descriptor(data):
    return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def manifest_for(config, layers):
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **blob_descriptor(config)),
        "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **blob_descriptor(layer))
                   for layer in layers],
    }).encode()


def put_blob(s, host, repo, data):
    d = blob_descriptor(data)["digest"]
    r = s.post(f"http://{host}/v2/{repo}/blobs/uploads/?digest={d}", data=data)
    assert r.status_code == 201, r.text


def test_of_two_nodes_racing_one_immutable_tag_exactly_one_wins(cluster):
    ecr = cluster.client()
    ecr.create_repository(repositoryName="fixed", imageTagMutability="IMMUTABLE")
    s = session(cluster.token())
    a, b = cluster.cluster.hosts[0], cluster.cluster.hosts[1]
    config = b'{"architecture":"amd64","os":"linux"}'
    put_blob(s, a, "fixed", config)
    manifests = []
    for i in range(2):
        layer = os.urandom(256) + bytes([i])
        put_blob(s, a, "fixed", layer)
        manifests.append(manifest_for(config, [layer]))
    for round_ in range(8):
        tag = f"v{round_}"
        barrier = threading.Barrier(2)
        results = [None, None]

        def put(i, host):
            barrier.wait()
            results[i] = s.put(f"http://{host}/v2/fixed/manifests/{tag}", data=manifests[i],
                               headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

        threads = [threading.Thread(target=put, args=(0, a)), threading.Thread(target=put, args=(1, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [201, 400], [(r.status_code, r.text) for r in results]
        loser = next(r for r in results if r.status_code == 400)
        assert loser.json()["errors"][0]["code"] == "TAG_INVALID", loser.text
        winner = next(i for i, r in enumerate(results) if r.status_code == 201)
        got = s.get(f"http://{cluster.cluster.hosts[2]}/v2/fixed/manifests/{tag}",
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert got.content == manifests[winner]


def test_a_node_killed_mid_push_loses_no_acknowledged_push(cluster):
    ecr = cluster.client()
    ecr.create_repository(repositoryName="survive")
    token = cluster.token()
    hosts = cluster.cluster.hosts
    victim = 1
    part_way = threading.Barrier(5)
    killed = threading.Event()
    pushed, errors, recoveries = {}, [], []

    def push(i):
        try:
            s = session(token)
            layer = os.urandom(12 * MIB + i)
            config = json.dumps({"architecture": "amd64", "os": "linux", "pusher": i}).encode()
            alive = [h for j, h in enumerate(hosts) if j != victim]
            dead = set()
            r = s.post(f"http://{hosts[0]}/v2/survive/blobs/uploads/")
            assert r.status_code == 202, r.text
            path, offset, n = path_of(r.headers["Location"]), 0, 0
            while offset < len(layer):
                # Chunks go round the nodes; a client learns a node is dead by failing on it.
                host = hosts[n % 3]
                n += 1
                if host in dead:
                    continue
                chunk = layer[offset:offset + 2 * MIB]
                try:
                    r = s.patch(f"http://{host}{path}", data=chunk, timeout=30, headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
                except requests.ConnectionError:
                    r = None
                if r is None or r.status_code >= 500:
                    assert killed.is_set(), "only the killed node fails"
                    dead.add(host)
                    recoveries.append(i)
                    # The node died under this chunk: ask a live node where the upload stands.
                    time.sleep(0.2)
                    status = s.get(f"http://{alive[0]}{path}")
                    assert status.status_code == 204, status.text
                    offset = int(status.headers["Range"].split("-")[1]) + 1
                    continue
                assert r.status_code == 202, r.text
                path, offset = path_of(r.headers["Location"]), offset + len(chunk)
                if offset == 2 * MIB:
                    part_way.wait(timeout=60)  # every pusher has one chunk acknowledged
                time.sleep(0.3)  # slow enough that the kill lands mid-push
            digest = blob_descriptor(layer)["digest"]
            sep = "&" if "?" in path else "?"
            r = s.put(f"http://{alive[i % 2]}{path}{sep}digest={digest}")
            assert r.status_code == 201, r.text
            put_blob(s, alive[0], "survive", config)
            manifest = manifest_for(config, [layer])
            r = s.put(f"http://{alive[1]}/v2/survive/manifests/p{i}", data=manifest,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 201, r.text
            pushed[i] = (manifest, layer)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
            try:
                part_way.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    part_way.wait(timeout=60)
    killed.set()
    cluster.cluster.procs[victim].send_signal(signal.SIGKILL)
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    assert sorted(pushed) == [0, 1, 2, 3]
    assert recoveries, "some pusher hit the killed node part-way and continued on another"
    s = session(token)
    for i, (manifest, layer) in pushed.items():
        for host in (hosts[0], hosts[2]):
            got = s.get(f"http://{host}/v2/survive/manifests/p{i}",
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert got.content == manifest
            blob = s.get(f"http://{host}/v2/survive/blobs/{blob_descriptor(layer)['digest']}")
            assert blob.content == layer
    fsck = cluster.cli("fsck", check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_gc_on_one_node_while_pushes_and_deletes_go_through_the_others(cluster):
    ecr = cluster.client()
    ecr.create_repository(repositoryName="churn")
    token = cluster.token()
    deadline = time.time() + 15
    kept, errors = {}, []

    class Via:
        """push_image's view of one node."""

        def __init__(self, host):
            self.endpoint = f"http://{host}"

        def token(self):
            return token

    def pusher(k):
        try:
            n = 0
            while time.time() < deadline:
                via = Via(cluster.cluster.hosts[(k + n) % 3])
                tag = f"w{k}-{n}"
                digest, manifest, _ = push_image(via, "churn", tag, seed=f"{k}-{n}")
                if n % 3 == 2:
                    ecr.batch_delete_image(repositoryName="churn", imageIds=[{"imageTag": tag}])
                else:
                    kept[tag] = manifest
                n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=pusher, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    log = open(os.path.join(cluster.data_dir, "berth.log")).read()
    assert log.count("garbage collection") >= 3, "GC ran while the pushes went on"
    s = session(token)
    for tag, manifest in kept.items():
        got = s.get(f"{cluster.endpoint}/v2/churn/manifests/{tag}",
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert got.status_code == 200 and got.text == manifest, tag
        for layer in json.loads(manifest)["layers"] + [json.loads(manifest)["config"]]:
            blob = s.get(f"{cluster.endpoint}/v2/churn/blobs/{layer['digest']}")
            assert blob.status_code == 200 and len(blob.content) == layer["size"], tag
    fsck = cluster.cli("fsck", check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_clients_behind_nginx_are_told_apart_by_their_address(cluster):
    ecr = cluster.client()
    ecr.create_repository(repositoryName="edge")
    _, _, layer = push_image(cluster, "edge", "v1", seed="cluster-proxy")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "Condition": {"NotIpAddress": {"aws:SourceIp": "127.0.0.2/32"}}}]}
    ecr.set_repository_policy(repositoryName="edge", policyText=json.dumps(policy))
    token = cluster.token()
    for _ in range(3):  # round robin: each node sees both clients
        allowed = session_from("127.0.0.2").get(f"{cluster.endpoint}/v2/edge/blobs/{layer}", auth=("AWS", token))
        assert allowed.status_code == 200
        denied = session_from("127.0.0.3").get(f"{cluster.endpoint}/v2/edge/blobs/{layer}", auth=("AWS", token))
        assert denied.status_code == 403 and denied.json()["errors"][0]["code"] == "DENIED"
    assert ACCOUNT_ID in cluster.client().describe_registry()["registryId"]
