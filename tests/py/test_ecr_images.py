"""The image operations of the ECR API with boto3: ListImages, DescribeImages, BatchGetImage,
PutImage, BatchDeleteImage, BatchCheckLayerAvailability."""
import json
import time

import requests

from conftest import push_image

OCI = "application/vnd.oci.image.manifest.v1+json"


def test_list_describe_get_put_delete(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="img")
    old, _, _ = push_image(berth, "img", "v1", 1)
    new, manifest, layer = push_image(berth, "img", "v1", 2)  # v1 moves: the old image stays, untagged

    ids = ecr.list_images(repositoryName="img")["imageIds"]
    assert {"imageDigest": old} in ids and {"imageDigest": new, "imageTag": "v1"} in ids and len(ids) == 2
    assert ecr.list_images(repositoryName="img", filter={"tagStatus": "UNTAGGED"})["imageIds"] == [{"imageDigest": old}]
    assert ecr.list_images(repositoryName="img", filter={"tagStatus": "TAGGED"})["imageIds"] == [
        {"imageDigest": new, "imageTag": "v1"}
    ]

    # PutImage adds a tag to the same manifest; the same tag again is ImageAlreadyExists.
    put = ecr.put_image(repositoryName="img", imageManifest=manifest, imageTag="stable", imageManifestMediaType=OCI)
    assert put["image"]["imageId"] == {"imageDigest": new, "imageTag": "stable"}
    try:
        ecr.put_image(repositoryName="img", imageManifest=manifest, imageTag="stable")
        raise AssertionError("expected ImageAlreadyExistsException")
    except ecr.exceptions.ImageAlreadyExistsException:
        pass
    try:
        ecr.put_image(repositoryName="img", imageManifest=manifest, imageTag="x", imageDigest="sha256:" + "0" * 64)
        raise AssertionError("expected ImageDigestDoesNotMatchException")
    except ecr.exceptions.ImageDigestDoesNotMatchException:
        pass
    broken = json.loads(manifest)
    broken["layers"][0]["digest"] = "sha256:" + "1" * 64
    try:
        ecr.put_image(repositoryName="img", imageManifest=json.dumps(broken), imageTag="broken")
        raise AssertionError("expected LayersNotFoundException")
    except ecr.exceptions.LayersNotFoundException:
        pass
    try:
        ecr.put_image(repositoryName="missing-repo", imageManifest=manifest, imageTag="v1")
        raise AssertionError("expected RepositoryNotFoundException")
    except ecr.exceptions.RepositoryNotFoundException:
        pass

    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName="img")["imageDetails"]}
    d = details[new]
    assert sorted(d["imageTags"]) == ["stable", "v1"]
    assert d["imageManifestMediaType"] == OCI
    assert d["artifactMediaType"] == "application/vnd.oci.image.config.v1+json"
    assert d["imageSizeInBytes"] > 64 and d["imagePushedAt"].year >= 2024
    assert "imageTags" not in details[old]
    try:
        ecr.describe_images(repositoryName="img", imageIds=[{"imageTag": "nope"}])
        raise AssertionError("expected ImageNotFoundException")
    except ecr.exceptions.ImageNotFoundException:
        pass

    # BatchGetImage returns the exact manifest; an unaccepted media type is a failure.
    got = ecr.batch_get_image(repositoryName="img", imageIds=[{"imageTag": "v1"}, {"imageTag": "nope"}])
    assert got["images"][0]["imageManifest"] == manifest
    assert got["images"][0]["imageId"] == {"imageDigest": new, "imageTag": "v1"}
    assert got["failures"][0]["failureCode"] == "ImageNotFound"
    docker_only = ecr.batch_get_image(
        repositoryName="img",
        imageIds=[{"imageTag": "v1"}],
        acceptedMediaTypes=["application/vnd.docker.distribution.manifest.v2+json"],
    )
    assert docker_only["images"] == [] and len(docker_only["failures"]) == 1

    # A pull is recorded (lastRecordedPullTime), in the background.
    for _ in range(50):
        if "lastRecordedPullTime" in ecr.describe_images(repositoryName="img", imageIds=[{"imageDigest": new}])["imageDetails"][0]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no lastRecordedPullTime after BatchGetImage")

    layers = ecr.batch_check_layer_availability(repositoryName="img", layerDigests=[layer, "sha256:" + "2" * 64, "bad"])
    assert layers["layers"][0]["layerDigest"] == layer and layers["layers"][0]["layerAvailability"] == "AVAILABLE"
    assert sorted(f["failureCode"] for f in layers["failures"]) == ["InvalidLayerDigest", "MissingLayerDigest"]

    # Deleting a tag keeps the image while other tags remain; its last tag takes it along.
    r = ecr.batch_delete_image(repositoryName="img", imageIds=[{"imageTag": "stable"}, {"imageDigest": old}, {"imageTag": "ghost"}])
    assert {"imageDigest": new, "imageTag": "stable"} in r["imageIds"] and {"imageDigest": old} in r["imageIds"]
    assert r["failures"][0]["failureCode"] == "ImageNotFound"
    assert ecr.list_images(repositoryName="img")["imageIds"] == [{"imageDigest": new, "imageTag": "v1"}]
    ecr.batch_delete_image(repositoryName="img", imageIds=[{"imageTag": "v1"}])
    assert ecr.list_images(repositoryName="img")["imageIds"] == []
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    assert s.get(f"{berth.endpoint}/v2/img/manifests/{new}").status_code == 404


def test_immutable_put_image_and_pagination(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="frozen", imageTagMutability="IMMUTABLE")
    _, first, _ = push_image(berth, "frozen", "v1", 1)
    _, second, _ = push_image(berth, "frozen", "v2", 2)
    try:
        ecr.put_image(repositoryName="frozen", imageManifest=second, imageTag="v1")
        raise AssertionError("expected ImageTagAlreadyExistsException")
    except ecr.exceptions.ImageTagAlreadyExistsException as e:
        assert "cannot be overwritten because the repository is immutable" in str(e)
    for i in range(3, 8):
        push_image(berth, "frozen", f"v{i}", i)
    seen = []
    for page in ecr.get_paginator("list_images").paginate(repositoryName="frozen", PaginationConfig={"PageSize": 2}):
        assert len(page["imageIds"]) <= 2
        seen += page["imageIds"]
    assert sorted(i["imageTag"] for i in seen) == [f"v{i}" for i in range(1, 8)]
    described = []
    for page in ecr.get_paginator("describe_images").paginate(repositoryName="frozen", PaginationConfig={"PageSize": 3}):
        described += page["imageDetails"]
    assert len(described) == 7
    # Index children cannot be deleted while the index lists them.
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI, "digest": described[0]["imageDigest"], "size": 10}],
    })
    ecr.put_image(repositoryName="frozen", imageManifest=index, imageTag="multi")
    r = ecr.batch_delete_image(repositoryName="frozen", imageIds=[{"imageDigest": described[0]["imageDigest"]}])
    assert r["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
    assert first


def test_list_image_referrers(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="refs")
    subject, subject_manifest, _ = push_image(berth, "refs", "v1", 1)
    import hashlib

    s = requests.Session()
    s.auth = ("AWS", berth.token())
    empty = b"{}"
    empty_digest = "sha256:" + hashlib.sha256(empty).hexdigest()
    assert s.post(f"{berth.endpoint}/v2/refs/blobs/uploads/?digest={empty_digest}", data=empty).status_code == 201
    pushed = []
    for kind in ["application/vnd.example.sbom", "application/vnd.example.sig", "application/vnd.example.sig"]:
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI, "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI, "digest": subject, "size": len(subject_manifest)},
            "annotations": {"n": str(len(pushed))},
        })
        r = ecr.put_image(repositoryName="refs", imageManifest=body, imageManifestMediaType=OCI)
        pushed.append(r["image"]["imageId"]["imageDigest"])
    refs = ecr.list_image_referrers(repositoryName="refs", subjectId={"imageDigest": subject})["referrers"]
    assert sorted(r["digest"] for r in refs) == sorted(pushed)
    assert all(r["artifactStatus"] == "ACTIVE" and r["size"] > 0 for r in refs)
    sigs = ecr.list_image_referrers(
        repositoryName="refs", subjectId={"imageDigest": subject}, filter={"artifactTypes": ["application/vnd.example.sig"]}
    )["referrers"]
    assert len(sigs) == 2
    page = ecr.list_image_referrers(repositoryName="refs", subjectId={"imageDigest": subject}, maxResults=2)
    assert len(page["referrers"]) == 2 and "nextToken" in page
    rest = ecr.list_image_referrers(repositoryName="refs", subjectId={"imageDigest": subject}, nextToken=page["nextToken"])
    assert len(rest["referrers"]) == 1
