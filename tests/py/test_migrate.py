"""`berth migrate`: an embedded data directory with several accounts, users and policies,
repository and registry policies, a creation template, lifecycle policies, scans with findings,
a vulnerability database and a multi-arch image, copied into PostgreSQL (BERTH_TEST_POSTGRES)
and S3 (BERTH_TEST_S3) — killed twice part-way and run again — then served by two nodes on the
copy: per-table row counts equal, every image bit-identical, the same keys sign in, the same
descriptions come back, `berth fsck` clean on the copy."""
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import tempfile
import time

import requests

from conftest import ACCOUNT_ID, REGION, Berth, berth_bin, single_node
from test_postgres_nodes import database, psql  # noqa: F401 (fixture)
from test_s3_blobs import bucket_url
from test_scanning import DEBIAN_LAYERS, Pusher, debian_record, import_db, wait_complete

pytestmark = single_node("it migrates a data directory and starts its own nodes on the copy")

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
NOT_CARRIED = {"uploads", "leases"}


def populate(node, tmp_path):
    """What a registry that has been used for a while holds; returns the references to pull
    back: [(repo, tag)]."""
    ecr = node.client()
    import_db(node, tmp_path)
    # Enough records that copying them takes a moment (the first interruption lands here).
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    for i in range(4000):
        r = debian_record(f"CVE-2023-{i:05d}", f"pkg{i}", "1.0-1")
        (bulk / f"{r['id']}.json").write_text(json.dumps(r))
    node.cli("vulndb", "import", str(bulk))

    other = node.admin("create-account", "210987654321")
    node.admin("create-user", "ci")
    node.admin("put-user-policy", "ci", "push", "-", stdin=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}],
    }))
    node.admin("create-group", "readers")
    node.admin("add-user-to-group", "readers", "ci")
    node.admin("attach-group-policy", "readers", "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    ci_key = node.admin("create-access-key", "ci")["AccessKey"]

    ecr.create_repository(repositoryName="app", imageScanningConfiguration={"scanOnPush": True},
                          imageTagMutability="IMMUTABLE", tags=[{"Key": "team", "Value": "core"}])
    ecr.create_repository(repositoryName="multi")
    ecr.set_repository_policy(repositoryName="multi", policyText=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "other", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                       "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}],
    }))
    ecr.put_lifecycle_policy(repositoryName="multi", lifecyclePolicyText=json.dumps({"rules": [{
        "rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                         "countUnit": "days", "countNumber": 30},
        "action": {"type": "expire"}}]}))
    ecr.create_repository_creation_template(prefix="team", appliedFor=["CREATE_ON_PUSH"],
                                            imageTagMutability="IMMUTABLE")
    ecr.put_registry_policy(policyText=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                       "Action": ["ecr:ReplicateImage"], "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/*"}],
    }))
    ecr.put_account_setting(name="BASIC_SCAN_TYPE_VERSION", value="CLAIR")

    pusher = Pusher(node)
    pusher.push("app", "v1", DEBIAN_LAYERS)
    # A blob of some size, so that copying the blobs takes a moment too.
    pusher.push("app", "big", [{"data.bin": os.urandom(24 * 1024 * 1024)}])
    wait_complete(node, "app", "v1")

    # A multi-arch image: two platform manifests under one index.
    children = []
    for arch in ("amd64", "arm64"):
        digest, _ = pusher.push("multi", f"only-{arch}", [{f"bin/{arch}": arch * 100}])
        r = pusher.s.get(f"{pusher.base}/v2/multi/manifests/{digest}", headers={"Accept": MANIFEST})
        children.append({"mediaType": MANIFEST, "digest": digest, "size": len(r.content),
                         "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": children}).encode()
    r = pusher.s.put(f"{pusher.base}/v2/multi/manifests/latest", data=index, headers={"Content-Type": INDEX})
    assert r.status_code == 201, r.text
    return other, ci_key, [("app", "v1"), ("app", "big"), ("multi", "latest"), ("multi", "only-amd64"), ("multi", "only-arm64")]


def pull_all(node, refs):
    """Every manifest (an index's children too) and blob of `refs`, as bytes: {url path: sha256}."""
    s = requests.Session()
    s.auth = ("AWS", node.token())
    accept = ", ".join([INDEX, MANIFEST])
    seen = {}

    def manifest(repo, ref):
        r = s.get(f"{node.endpoint}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
        assert r.status_code == 200, (repo, ref, r.text)
        seen[f"{repo}/manifests/{ref}"] = hashlib.sha256(r.content).hexdigest()
        body = r.json()
        for child in body.get("manifests", []):
            manifest(repo, child["digest"])
        for blob in [body.get("config")] + body.get("layers", []):
            if blob:
                b = s.get(f"{node.endpoint}/v2/{repo}/blobs/{blob['digest']}")
                assert b.status_code == 200, b.text
                assert hashlib.sha256(b.content).hexdigest() == blob["digest"].split(":")[1]
                seen[f"{repo}/blobs/{blob['digest']}"] = len(b.content)

    for repo, tag in refs:
        manifest(repo, tag)
    return seen


def descriptions(node):
    """What the ECR API says about the registry, minus what pulling changes."""
    ecr = node.client()
    out = {"repositories": ecr.describe_repositories()["repositories"]}
    for repo in out["repositories"]:
        name = repo["repositoryName"]
        images = ecr.describe_images(repositoryName=name)["imageDetails"]
        for i in images:
            i.pop("lastRecordedPullTime", None)
        out[f"images {name}"] = sorted(images, key=lambda i: i["imageDigest"])
        out[f"tags {name}"] = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    out["policy multi"] = ecr.get_repository_policy(repositoryName="multi")["policyText"]
    out["lifecycle multi"] = ecr.get_lifecycle_policy(repositoryName="multi")["lifecyclePolicyText"]
    out["templates"] = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    out["registry policy"] = ecr.get_registry_policy()["policyText"]
    out["setting"] = ecr.get_account_setting(name="BASIC_SCAN_TYPE_VERSION")["value"]
    findings = ecr.describe_image_scan_findings(repositoryName="app", imageId={"imageTag": "v1"})
    out["findings"] = sorted(f["name"] for f in findings["imageScanFindings"]["findings"])
    # Repository URIs name the node's address.
    return json.loads(json.dumps(out, default=str).replace(node.host, "HOST"))


def source_counts(data_dir):
    db = sqlite3.connect(f"file:{data_dir}/meta.db?mode=ro", uri=True)
    names = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'")]
    counts = {n: db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    db.close()
    return counts


def start_migrate(data_dir, meta, blobs):
    return subprocess.Popen(
        [berth_bin(), "migrate", "--data-dir", data_dir, "--to-meta", meta, "--to-blobs", blobs],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def kill_when(proc, pattern, after=0.0):
    """Reads the migration's progress until a line matches `pattern`, then (`after` seconds
    later) kills it -9."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if re.match(pattern, line):
            time.sleep(after)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
    raise AssertionError(f"the migration ended before {pattern!r}: {''.join(seen)}")


def report(stdout):
    """The final table: {table: (embedded, postgres, copied now)}."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and not line.startswith(("blobs:", "PROBLEM")):
            rows[parts[0]] = tuple(parts[1:4])
    return rows


def test_migrate_copies_everything_resumes_after_kill_and_the_copy_serves_it(tmp_path, database):  # noqa: F811
    src = tmp_path / "src"
    src.mkdir()
    data_dir = str(src / "data")
    blobs = bucket_url()
    node = Berth(str(src), cluster=False)
    try:
        other, ci_key, refs = populate(node, tmp_path)
        before = pull_all(node, refs)
        described = descriptions(node)
        # A running server holds the directory.
        p = subprocess.run([berth_bin(), "migrate", "--data-dir", data_dir, "--to-meta", database, "--to-blobs", blobs],
                           capture_output=True, text=True)
        assert p.returncode != 0 and "in use by a running berth serve" in p.stderr, p.stderr
    finally:
        node.stop()
    counts = source_counts(data_dir)
    assert counts["accounts"] == 2 and counts["vuln_records"] > 4000 and counts["image_scans"] >= 1, counts

    # Killed while copying the vulnerability records, then again while copying the blobs.
    kill_when(start_migrate(data_dir, database, blobs), r"copying vuln_records")
    assert psql(database, "SELECT count(*) FROM data_imports WHERE finished_at IS NULL") == "1"
    assert psql(database, "SELECT count(*) FROM accounts") == "2", "the tables before it were copied"
    assert int(psql(database, "SELECT count(*) FROM vuln_records")) < counts["vuln_records"]
    err = subprocess.run(
        [berth_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "early")],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, BERTH_META=database, BERTH_BLOBS=blobs, BERTH_MASTER_KEY_FILE=f"{data_dir}/master.key"),
    ).stderr
    assert "has not finished" in err, err
    kill_when(start_migrate(data_dir, database, blobs), r"copying \d+ blobs", after=0.5)
    assert psql(database, "SELECT count(*) FROM vuln_records") == str(counts["vuln_records"])
    last = start_migrate(data_dir, database, blobs)
    out, err = last.communicate(timeout=600)
    assert last.returncode == 0, out + err
    table = report(out)
    for name, n in counts.items():
        if name in NOT_CARRIED:
            assert table[name][1] == "-", (name, table[name])
            continue
        assert table[name][:2] == (str(n), str(n)), (name, table[name])
        assert psql(database, f'SELECT count(*) FROM "{name}"') == str(n), name
    # The last run found the accounts there already.
    assert table["accounts"][2] == "0", table["accounts"]
    assert "0 problems" in out, out
    copied, there = re.search(r"(\d+) copied now \(\d+ bytes\), (\d+) there already", out).groups()
    assert int(copied) + int(there) == counts["blobs"], out

    # The copy, served by two nodes with the source's keyring: same keys, same answers, same bytes.
    env = {"BERTH_META": database, "BERTH_BLOBS": blobs, "BERTH_MASTER_KEY_FILE": f"{data_dir}/master.key"}
    nodes = []
    try:
        for i in range(2):
            d = tmp_path / f"node{i}"
            d.mkdir()
            nodes.append(Berth(str(d), extra_env=env, cluster=False))
        assert descriptions(nodes[0]) == described
        for n in nodes:
            assert pull_all(n, refs) == before
        nodes[1].client(key=ci_key["AccessKeyId"], secret=ci_key["SecretAccessKey"]).describe_images(repositoryName="app")
        other_key = other["AccessKey"]
        nodes[1].client(key=other_key["AccessKeyId"], secret=other_key["SecretAccessKey"]).get_authorization_token()
        # A repository created on the copy gets an id past the copied ones.
        nodes[0].client().create_repository(repositoryName="after-migrate")
    finally:
        for n in nodes:
            n.stop()
    fsck = subprocess.run([berth_bin(), "fsck", "--data-dir", str(tmp_path / "node0" / "data")],
                          capture_output=True, text=True, env=dict(os.environ, **env))
    assert fsck.returncode == 0 and "0 problems" in fsck.stdout, fsck.stdout + fsck.stderr

    # Another data directory is not poured into a database that holds data.
    with tempfile.TemporaryDirectory() as d:
        fresh = Berth(d, cluster=False)
        fresh.stop()
        p = subprocess.run([berth_bin(), "migrate", "--data-dir", f"{d}/data", "--to-meta", database,
                            "--to-blobs", bucket_url()], capture_output=True, text=True)
        assert p.returncode != 0 and "holds an import from" in p.stderr, p.stderr
