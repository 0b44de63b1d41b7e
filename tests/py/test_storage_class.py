"""The archive storage class: UpdateImageStorageClass, imageStatus in listings, archived images
not pullable until restored or pushed again, and lifecycle rules that transition and expire them
(with Berth's protection extension), driven with the AWS CLI, boto3 and plain /v2/ requests."""
import json

import pytest
import requests

from conftest import push_image
from test_lifecycle_api import run_lifecycle

OCI = "application/vnd.oci.image.manifest.v1+json"


def v2(berth):
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    s.headers["Accept"] = OCI
    return s


def status_of(ecr, repo, digest):
    detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])["imageDetails"][0]
    return detail["imageStatus"], detail


def test_archive_and_restore(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="cold")
    a, a_manifest, _ = push_image(berth, "cold", "a", 1)
    b, _, _ = push_image(berth, "cold", "b", 2)

    out = json.loads(
        berth.aws("ecr", "update-image-storage-class", "--repository-name", "cold", "--image-id", "imageTag=a",
                  "--target-storage-class", "ARCHIVE").stdout
    )
    assert out["imageStatus"] == "ARCHIVED" and out["imageId"] == {"imageDigest": a, "imageTag": "a"}
    status, detail = status_of(ecr, "cold", a)
    assert status == "ARCHIVED" and "lastArchivedAt" in detail and detail["imageTags"] == ["a"]

    # Listings show ACTIVE images unless asked otherwise, as in ECR.
    assert [i["imageDigest"] for i in ecr.list_images(repositoryName="cold")["imageIds"]] == [b]
    archived = ecr.list_images(repositoryName="cold", filter={"imageStatus": "ARCHIVED"})["imageIds"]
    assert archived == [{"imageDigest": a, "imageTag": "a"}]
    every = ecr.describe_images(repositoryName="cold", filter={"imageStatus": "ANY"})["imageDetails"]
    assert {d["imageDigest"]: d["imageStatus"] for d in every} == {a: "ARCHIVED", b: "ACTIVE"}
    assert [d["imageDigest"] for d in ecr.describe_images(repositoryName="cold")["imageDetails"]] == [b]

    # Not pullable: 404 on /v2/ (by tag and digest), a failure from BatchGetImage.
    s = v2(berth)
    for ref in ("a", a):
        r = s.get(f"{berth.endpoint}/v2/cold/manifests/{ref}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN", r.text
        assert "archived" in r.json()["errors"][0]["message"]
    got = ecr.batch_get_image(repositoryName="cold", imageIds=[{"imageTag": "a"}, {"imageTag": "b"}])
    assert [i["imageId"]["imageDigest"] for i in got["images"]] == [b]
    assert got["failures"][0]["failureCode"] == "ImageNotFound" and "archived" in got["failures"][0]["failureReason"]
    assert s.get(f"{berth.endpoint}/v2/cold/manifests/b").status_code == 200

    # Restoring makes it pullable again at once (the bytes never left).
    out = ecr.update_image_storage_class(repositoryName="cold", imageId={"imageDigest": a}, targetStorageClass="STANDARD")
    assert out["imageStatus"] == "ACTIVE"
    assert s.get(f"{berth.endpoint}/v2/cold/manifests/a").status_code == 200
    assert "lastActivatedAt" in status_of(ecr, "cold", a)[1]

    # Pushing an archived image again restores it: through /v2/ and through PutImage.
    ecr.update_image_storage_class(repositoryName="cold", imageId={"imageTag": "a"}, targetStorageClass="ARCHIVE")
    r = s.put(f"{berth.endpoint}/v2/cold/manifests/a", data=a_manifest, headers={"Content-Type": OCI})
    assert r.status_code == 201, r.text
    assert status_of(ecr, "cold", a)[0] == "ACTIVE"
    ecr.update_image_storage_class(repositoryName="cold", imageId={"imageTag": "a"}, targetStorageClass="ARCHIVE")
    ecr.put_image(repositoryName="cold", imageManifest=a_manifest, imageTag="a")
    assert status_of(ecr, "cold", a)[0] == "ACTIVE"
    with pytest.raises(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName="cold", imageManifest=a_manifest, imageTag="a")

    with pytest.raises(ecr.exceptions.ImageNotFoundException):
        ecr.update_image_storage_class(repositoryName="cold", imageId={"imageTag": "nope"}, targetStorageClass="ARCHIVE")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.update_image_storage_class(repositoryName="nope", imageId={"imageTag": "a"}, targetStorageClass="ARCHIVE")
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.describe_images(repositoryName="cold", filter={"imageStatus": "FROZEN"})


POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "archive what has not been pulled for 30 days",
            "selection": {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 30},
            "action": {"type": "transition", "targetStorageClass": "archive"},
        },
        {
            "rulePriority": 2,
            "description": "delete what has been archived for 90 days",
            "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned",
                          "countUnit": "days", "countNumber": 90},
            "action": {"type": "expire"},
        },
    ],
    "berthProtection": {"pulledWithinDays": 60, "pinnedTags": ["release-*"]},
}


def test_lifecycle_transitions_then_expires(berth, tmp_path):
    ecr = berth.client()
    ecr.create_repository(repositoryName="tiered")
    digests = {tag: push_image(berth, "tiered", tag, i)[0] for i, tag in enumerate(["old-1", "old-2", "used", "release-1"])}
    # "used" is pulled now: at +31 days it was pulled 31 days ago, inside the 60-day protection.
    assert v2(berth).get(f"{berth.endpoint}/v2/tiered/manifests/used").status_code == 200
    import time

    for _ in range(50):  # pulls are recorded in the background
        if "lastRecordedPullTime" in status_of(ecr, "tiered", digests["used"])[1]:
            break
        time.sleep(0.1)

    path = tmp_path / "p.json"
    path.write_text(json.dumps(POLICY))
    berth.aws("ecr", "put-lifecycle-policy", "--repository-name", "tiered", "--lifecycle-policy-text", f"file://{path}")
    bad = json.loads(json.dumps(POLICY))
    bad["rules"][0]["action"] = {"type": "expire"}
    with pytest.raises(ecr.exceptions.InvalidParameterException) as e:
        ecr.put_lifecycle_policy(repositoryName="tiered", lifecyclePolicyText=json.dumps(bad))
    assert "sinceImagePulled is only allowed with the transition action" in str(e.value)

    first = run_lifecycle(berth, "--repository", "tiered", "--now", "+31d")[0]
    assert {i["imageDigest"] for i in first["archived"]} == {digests["old-1"], digests["old-2"]}
    assert first["expired"] == []
    assert {d["imageDigest"] for d in ecr.describe_images(repositoryName="tiered", filter={"imageStatus": "ARCHIVED"})["imageDetails"]} == {
        digests["old-1"], digests["old-2"]}

    # 94 days after archiving (≥ 90) the archived pair expires; "used" is by now unprotected and
    # is archived; the pinned release image stays active.
    second = run_lifecycle(berth, "--repository", "tiered", "--now", "+125d")[0]
    assert {i["imageDigest"] for i in second["expired"]} == {digests["old-1"], digests["old-2"]}
    assert {i["imageDigest"] for i in second["archived"]} == {digests["used"]}
    every = ecr.describe_images(repositoryName="tiered", filter={"imageStatus": "ANY"})["imageDetails"]
    assert {d["imageDigest"]: d["imageStatus"] for d in every} == {digests["used"]: "ARCHIVED", digests["release-1"]: "ACTIVE"}

    # Every action is recorded as an event.
    import os
    import subprocess

    from conftest import berth_bin

    out = subprocess.run([berth_bin(), "lifecycle", "events", "--data-dir", os.path.join(berth.data_dir, "data"),
                          "--repository", "tiered"], capture_output=True, text=True,
                         env=dict(os.environ, **berth.command_env))
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    assert sorted((e["action"], e["imageDigest"]) for e in events) == sorted(
        [("TRANSITION", digests["old-1"]), ("TRANSITION", digests["old-2"]), ("EXPIRE", digests["old-1"]),
         ("EXPIRE", digests["old-2"]), ("TRANSITION", digests["used"])])


def test_preview_reports_transitions(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="pv")
    push_image(berth, "pv", "x", 1)
    push_image(berth, "pv", "y", 2)
    policy = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
                         "action": {"type": "transition", "targetStorageClass": "archive"}}]}
    ecr.start_lifecycle_policy_preview(repositoryName="pv", lifecyclePolicyText=json.dumps(policy))
    preview = ecr.get_lifecycle_policy_preview(repositoryName="pv")
    assert preview["summary"]["expiringImageTotalCount"] == 0
    assert preview["summary"]["transitioningImageTotalCounts"] == [{"targetStorageClass": "ARCHIVE", "imageTotalCount": 1}]
    (result,) = preview["previewResults"]
    assert result["action"] == {"type": "TRANSITION", "targetStorageClass": "ARCHIVE"}
    assert result["storageClass"] == "STANDARD" and result["imageTags"] == ["x"]
