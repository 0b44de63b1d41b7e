"""Layer uploads and downloads through the ECR API, account settings and resource tags, with
boto3 (the way the AWS SDKs push without a Docker client)."""
import hashlib
import json
import os

import pytest
import requests

MIB = 1024 * 1024


def upload(ecr, repo, parts):
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    first = 0
    for part in parts:
        r = ecr.upload_layer_part(
            repositoryName=repo, uploadId=upload_id, partFirstByte=first, partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
        first += len(part)
        assert r["lastByteReceived"] == first - 1
    return upload_id


def test_three_step_upload_and_download_url(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="layers")
    init = ecr.initiate_layer_upload(repositoryName="layers")
    assert init["partSize"] > 0
    data = os.urandom(6 * MIB) + os.urandom(1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = upload(ecr, "layers", [data[: 6 * MIB], data[6 * MIB :]])
    done = ecr.complete_layer_upload(repositoryName="layers", uploadId=upload_id, layerDigests=[digest])
    assert done["layerDigest"] == digest
    avail = ecr.batch_check_layer_availability(repositoryName="layers", layerDigests=[digest])
    assert avail["layers"][0]["layerSize"] == len(data)

    # The download URL works without other credentials, and only as signed.
    url = ecr.get_download_url_for_layer(repositoryName="layers", layerDigest=digest)["downloadUrl"]
    r = requests.get(url)
    assert r.status_code == 200 and r.content == data
    assert requests.get(url.replace("X-Berth-Signature=", "X-Berth-Signature=00")).status_code == 401
    other = url.replace("/v2/layers/", "/v2/layers2/")
    assert requests.get(other).status_code == 401
    with pytest.raises(ecr.exceptions.LayersNotFoundException):
        ecr.get_download_url_for_layer(repositoryName="layers", layerDigest="sha256:" + "3" * 64)

    # The same layer again: LayerAlreadyExists.
    again = upload(ecr, "layers", [data])
    with pytest.raises(ecr.exceptions.LayerAlreadyExistsException):
        ecr.complete_layer_upload(repositoryName="layers", uploadId=again, layerDigests=[digest])


def test_upload_errors(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="bad")
    # A small part followed by another.
    small = upload(ecr, "bad", [b"x" * 1000, b"y" * 1000])
    with pytest.raises(ecr.exceptions.LayerPartTooSmallException):
        ecr.complete_layer_upload(
            repositoryName="bad", uploadId=small, layerDigests=["sha256:" + hashlib.sha256(b"x" * 1000 + b"y" * 1000).hexdigest()]
        )
    # A wrong digest.
    wrong = upload(ecr, "bad", [b"content"])
    with pytest.raises(ecr.exceptions.InvalidLayerException):
        ecr.complete_layer_upload(repositoryName="bad", uploadId=wrong, layerDigests=["sha256:" + "4" * 64])
    # Out of order, and a range that does not match the bytes.
    gap = ecr.initiate_layer_upload(repositoryName="bad")["uploadId"]
    with pytest.raises(ecr.exceptions.InvalidLayerPartException):
        ecr.upload_layer_part(repositoryName="bad", uploadId=gap, partFirstByte=10, partLastByte=12, layerPartBlob=b"abc")
    with pytest.raises(ecr.exceptions.InvalidLayerPartException):
        ecr.upload_layer_part(repositoryName="bad", uploadId=gap, partFirstByte=0, partLastByte=9, layerPartBlob=b"abc")
    with pytest.raises(ecr.exceptions.EmptyUploadException):
        ecr.complete_layer_upload(repositoryName="bad", uploadId=gap, layerDigests=["sha256:" + "5" * 64])
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ecr.exceptions.UploadNotFoundException):
        ecr.upload_layer_part(repositoryName="bad", uploadId=missing, partFirstByte=0, partLastByte=0, layerPartBlob=b"a")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.initiate_layer_upload(repositoryName="nowhere")


def test_account_settings_and_resource_tags(berth):
    ecr = berth.client()
    assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] == "DISABLED"
    assert ecr.get_account_setting(name="REGISTRY_POLICY_SCOPE")["value"] == "V2"
    assert ecr.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")["value"] == "ENABLED"
    assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
    with pytest.raises(ecr.exceptions.ValidationException):
        ecr.put_account_setting(name="BLOB_MOUNTING", value="MAYBE")
    with pytest.raises(ecr.exceptions.ValidationException):
        ecr.get_account_setting(name="NO_SUCH_SETTING")

    arn = ecr.create_repository(repositoryName="tagged", tags=[{"Key": "a", "Value": "1"}])["repository"]["repositoryArn"]
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "a", "Value": "3"}, {"Key": "b", "Value": "2"}]
    ecr.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ecr.exceptions.TooManyTagsException):
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.tag_resource(resourceArn=arn.replace("tagged", "absent"), tags=[{"Key": "x", "Value": "y"}])
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.list_tags_for_resource(resourceArn="arn:aws:s3:::bucket")
    assert json.dumps(ecr.describe_registry()["registryId"])


def test_a_part_whose_range_does_not_match_its_bytes(berth):
    """A part's byte range must describe its bytes exactly (an unchecked `last - first + 1`
    wrapped to 0 for partLastByte 2^64-1 and let an empty part through). partLastByte is a
    `long` in the model: 2^64-1 is not one, a SerializationException as in AWS; the largest
    long is a range that does not match."""
    ecr = berth.client()
    ecr.create_repository(repositoryName="ranges")
    upload_id = ecr.initiate_layer_upload(repositoryName="ranges")["uploadId"]
    with pytest.raises(ecr.exceptions.ClientError) as e:
        ecr.upload_layer_part(
            repositoryName="ranges", uploadId=upload_id, partFirstByte=0, partLastByte=2**64 - 1, layerPartBlob=b""
        )
    assert e.value.response["Error"]["Code"] == "SerializationException"
    for first, last, blob in [(0, 2**63 - 1, b""), (0, 9, b"12345"), (0, 3, b"12345"), (5, 4, b"")]:
        with pytest.raises(ecr.exceptions.InvalidLayerPartException):
            ecr.upload_layer_part(
                repositoryName="ranges", uploadId=upload_id, partFirstByte=first, partLastByte=last,
                layerPartBlob=blob,
            )
    r = ecr.upload_layer_part(
        repositoryName="ranges", uploadId=upload_id, partFirstByte=0, partLastByte=4, layerPartBlob=b"12345"
    )
    assert r["lastByteReceived"] == 4
