"""Lifecycle policies through the ECR API: put (validated), get, delete, and the preview of what
a policy would expire, with the AWS CLI and boto3."""
import json

import pytest

from conftest import push_image

POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "keep the last 5 prod images",
            "selection": {"tagStatus": "tagged", "tagPatternList": ["prod*"], "countType": "imageCountMoreThan", "countNumber": 5},
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "untagged older than 14 days",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
            "action": {"type": "expire"},
        },
    ]
}


def test_put_get_preview_delete(berth, tmp_path):
    ecr = berth.client()
    ecr.create_repository(repositoryName="life")
    digests = {}
    for i in range(1, 9):
        digests[f"prod-{i}"] = push_image(berth, "life", f"prod-{i}", i)[0]
    push_image(berth, "life", "dev-1", 100)

    path = tmp_path / "p.json"
    path.write_text(json.dumps(POLICY))
    out = json.loads(berth.aws("ecr", "put-lifecycle-policy", "--repository-name", "life", "--lifecycle-policy-text", f"file://{path}").stdout)
    assert json.loads(out["lifecyclePolicyText"]) == POLICY
    got = json.loads(berth.aws("ecr", "get-lifecycle-policy", "--repository-name", "life").stdout)
    assert json.loads(got["lifecyclePolicyText"]) == POLICY

    assert ecr.start_lifecycle_policy_preview(repositoryName="life")["status"] in ("IN_PROGRESS", "COMPLETE")
    preview = ecr.get_lifecycle_policy_preview(repositoryName="life")
    assert preview["status"] == "COMPLETE"
    assert preview["summary"]["expiringImageTotalCount"] == 3
    expiring = {r["imageDigest"]: r for r in preview["previewResults"]}
    # Pushed in order prod-1 … prod-8: the three oldest go, by rule 1.
    assert set(expiring) == {digests["prod-1"], digests["prod-2"], digests["prod-3"]}
    assert all(r["appliedRulePriority"] == 1 and r["action"]["type"] == "EXPIRE" for r in expiring.values())
    page = ecr.get_lifecycle_policy_preview(repositoryName="life", maxResults=2)
    assert len(page["previewResults"]) == 2 and "nextToken" in page
    by_tag = ecr.get_lifecycle_policy_preview(repositoryName="life", imageIds=[{"imageTag": "prod-2"}])
    assert [r["imageDigest"] for r in by_tag["previewResults"]] == [digests["prod-2"]]
    # The preview changes nothing.
    assert len(ecr.list_images(repositoryName="life")["imageIds"]) == 9

    # A policy given to the preview only is evaluated without being stored.
    keep_one = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}
    ecr.start_lifecycle_policy_preview(repositoryName="life", lifecyclePolicyText=json.dumps(keep_one))
    assert ecr.get_lifecycle_policy_preview(repositoryName="life")["summary"]["expiringImageTotalCount"] == 8
    assert json.loads(ecr.get_lifecycle_policy(repositoryName="life")["lifecyclePolicyText"]) == POLICY

    bad = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
                     {"rulePriority": 2, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}
    with pytest.raises(ecr.exceptions.InvalidParameterException) as e:
        ecr.put_lifecycle_policy(repositoryName="life", lifecyclePolicyText=json.dumps(bad))
    assert "must have the highest rulePriority" in str(e.value)

    deleted = ecr.delete_lifecycle_policy(repositoryName="life")
    assert json.loads(deleted["lifecyclePolicyText"]) == POLICY
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName="life")
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.delete_lifecycle_policy(repositoryName="life")
    ecr.create_repository(repositoryName="fresh")
    with pytest.raises(ecr.exceptions.LifecyclePolicyPreviewNotFoundException):
        ecr.get_lifecycle_policy_preview(repositoryName="fresh")
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.start_lifecycle_policy_preview(repositoryName="fresh")


def run_lifecycle(berth, *args):
    import os
    import subprocess

    from conftest import berth_bin

    out = subprocess.run(
        [berth_bin(), "lifecycle", "run", "--data-dir", os.path.join(berth.data_dir, "data"), *args],
        capture_output=True, text=True, env=dict(os.environ, **berth.command_env),
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_runner_applies_the_seed_policies(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="app")
    digests = {}
    for i in range(1, 9):
        digests[f"prod-{i}"] = push_image(berth, "app", f"prod-{i}", i)[0]
    for name in ["dev-1", "dev-2"]:
        digests[name] = push_image(berth, "app", name, hash(name) % 1000)[0]
    # Two untagged images: their tag moved on.
    untagged = [push_image(berth, "app", "scratch", 500 + i)[0] for i in range(3)][:2]
    ecr.put_lifecycle_policy(repositoryName="app", lifecyclePolicyText=json.dumps(POLICY))

    dry = run_lifecycle(berth, "--repository", "app", "--dry-run")
    assert {e["imageDigest"] for e in dry[0]["expired"]} == {digests["prod-1"], digests["prod-2"], digests["prod-3"]}
    assert len(ecr.list_images(repositoryName="app")["imageIds"]) == 13, "a dry run deletes nothing"

    # Fifteen days on, the untagged images are past their 14 days too.
    done = run_lifecycle(berth, "--now", "+15d")
    expired = {e["imageDigest"]: e["appliedRulePriority"] for e in done[0]["expired"]}
    assert expired == {digests["prod-1"]: 1, digests["prod-2"]: 1, digests["prod-3"]: 1, untagged[0]: 2, untagged[1]: 2}
    left = {i.get("imageTag") for i in ecr.list_images(repositoryName="app")["imageIds"]}
    assert left == {"prod-4", "prod-5", "prod-6", "prod-7", "prod-8", "dev-1", "dev-2", "scratch"}
    assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName="app")
    # Survivors still pull; the expired are gone from /v2/ too.
    import requests

    s = requests.Session()
    s.auth = ("AWS", berth.token())
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert s.get(f"{berth.endpoint}/v2/app/manifests/prod-8", headers=accept).status_code == 200
    assert s.get(f"{berth.endpoint}/v2/app/manifests/{digests['prod-1']}", headers=accept).status_code == 404


def test_seed_policies_with_docker(berth, docker, tmp_path):
    """The issue's end-to-end: images pushed by the Docker engine (prod-1 … prod-8, dev-*, and
    untagged ones), the seed-style policies put with the AWS CLI, previewed, run 15 days on;
    ListImages shows exactly the survivors and `docker pull` works for every one of them."""
    import tarfile

    ecr = berth.client()
    ecr.create_repository(repositoryName="seed")
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=berth.token())

    def push(tag, content):
        rootfs = tmp_path / f"{tag}-{content}.tar"
        with tarfile.open(rootfs, "w") as t:
            f = tmp_path / "content.txt"
            f.write_text(content)
            t.add(f, arcname="content.txt")
        ref = f"{berth.host}/seed:{tag}"
        docker.run("import", str(rootfs), ref)
        docker.run("push", ref)

    for i in range(1, 9):
        push(f"prod-{i}", f"prod {i}")
    push("dev-1", "dev 1")
    push("scratch", "scratch a")  # becomes untagged when scratch moves on
    push("scratch", "scratch b")
    assert len(ecr.list_images(repositoryName="seed", filter={"tagStatus": "UNTAGGED"})["imageIds"]) == 1

    path = tmp_path / "p.json"
    path.write_text(json.dumps(POLICY))
    berth.aws("ecr", "put-lifecycle-policy", "--repository-name", "seed", "--lifecycle-policy-text", f"file://{path}")
    berth.aws("ecr", "start-lifecycle-policy-preview", "--repository-name", "seed")
    preview = json.loads(berth.aws("ecr", "get-lifecycle-policy-preview", "--repository-name", "seed").stdout)
    assert {tuple(r["imageTags"]) for r in preview["previewResults"]} == {("prod-1",), ("prod-2",), ("prod-3",)}

    run_lifecycle(berth, "--repository", "seed", "--now", "+15d")
    ids = json.loads(berth.aws("ecr", "list-images", "--repository-name", "seed").stdout)["imageIds"]
    survivors = sorted(i.get("imageTag", "") for i in ids)
    assert survivors == ["dev-1", "prod-4", "prod-5", "prod-6", "prod-7", "prod-8", "scratch"]
    for tag in survivors:
        ref = f"{berth.host}/seed:{tag}"
        docker.run("rmi", ref)
        docker.run("pull", ref)
    gone = docker.run("pull", f"{berth.host}/seed:prod-1", check=False)
    assert gone.returncode != 0
