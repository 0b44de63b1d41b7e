"""Replication (issue 17), in one region so far: the registry's replication configuration
through the ECR API (PutReplicationConfiguration checked as ECR checks it, DescribeRegistry
returning it, per account), and images replicated into another account of the same deployment
as pushes arrive, authorized by the destination's registry policy, with
DescribeImageReplicationStatus following them — boto3, the AWS CLI and /v2/ pulls."""
import hashlib
import json

import requests

import pytest

from conftest import REGION, replication_config as config, replication_rule as rule, wait_replicated

OTHER_ACCOUNT = "987654321098"


def test_a_replication_configuration_is_kept_per_account_and_described(berth):
    other = berth.admin("create-account", OTHER_ACCOUNT)["AccessKey"]
    a = berth.client()
    b = berth.client(key=other["AccessKeyId"], secret=other["SecretAccessKey"])
    me = a.describe_registry()["registryId"]
    assert a.describe_registry()["replicationConfiguration"] == {"rules": []}

    wanted = config(rule((REGION, OTHER_ACCOUNT), prefixes=["team-a/", "shared"]), rule((REGION, OTHER_ACCOUNT)))
    out = a.put_replication_configuration(replicationConfiguration=wanted)
    assert out["replicationConfiguration"] == wanted
    assert a.describe_registry() | {"ResponseMetadata": None} == {
        "registryId": me, "replicationConfiguration": wanted, "ResponseMetadata": None}
    # Another account's registry has a configuration of its own.
    assert b.describe_registry()["replicationConfiguration"] == {"rules": []}
    b.put_replication_configuration(replicationConfiguration=config(rule((REGION, me))))
    assert b.describe_registry()["replicationConfiguration"] == config(rule((REGION, me)))
    assert a.describe_registry()["replicationConfiguration"] == wanted

    # The AWS CLI, as a user would type it; an empty rule list turns replication off.
    text = json.dumps(config(rule((REGION, OTHER_ACCOUNT), prefixes=["prod"])))
    out = json.loads(berth.aws("ecr", "put-replication-configuration", "--replication-configuration", text).stdout)
    assert out["replicationConfiguration"] == json.loads(text)
    got = json.loads(berth.aws("ecr", "describe-registry").stdout)
    assert got["replicationConfiguration"] == json.loads(text)
    a.put_replication_configuration(replicationConfiguration={"rules": []})
    assert a.describe_registry()["replicationConfiguration"] == {"rules": []}


def test_what_ecr_refuses_is_refused_and_nothing_is_stored(berth):
    berth.admin("create-account", OTHER_ACCOUNT)
    a = berth.client()
    me = a.describe_registry()["registryId"]
    kept = config(rule((REGION, OTHER_ACCOUNT)))
    a.put_replication_configuration(replicationConfiguration=kept)

    def refused(cfg, words, kind="InvalidParameterException"):
        with pytest.raises(a.exceptions.ClientError) as e:
            a.put_replication_configuration(replicationConfiguration=cfg)
        assert e.value.response["Error"]["Code"] == kind, e.value.response
        assert words in e.value.response["Error"]["Message"], e.value.response["Error"]["Message"]

    refused(config(rule((REGION, me))), "source registry")
    refused(config(rule()), "at least one destination")
    refused(config(rule((REGION, OTHER_ACCOUNT), (REGION, OTHER_ACCOUNT))), "more than once")
    refused(config(rule(("eu-west-1", OTHER_ACCOUNT))), "region 'eu-west-1'")
    refused(config(rule((REGION, "555555555555"))), "'555555555555' is not served")
    # The model's bounds, at the front door (botocore checks none of these): 11 rules, a
    # filter outside the pattern, an unknown filter type, a registry id that is not 12 digits.
    refused(config(*[rule((REGION, OTHER_ACCOUNT))] * 11), "rules")
    refused(config(rule((REGION, OTHER_ACCOUNT), prefixes=["Bad"])), "filter")
    bad_type = rule((REGION, OTHER_ACCOUNT))
    bad_type["repositoryFilters"] = [{"filter": "abc", "filterType": "WILDCARD"}]
    refused(config(bad_type), "filterType")
    refused(config(rule((REGION, "12345"))), "registryId")
    # 26 unique destinations over two rules: ECR's limit is 25.
    accounts = [f"{i:012d}" for i in range(100000000000, 100000000026)]
    for acct in accounts:
        berth.admin("create-account", acct)
    refused(config(rule(*[(REGION, x) for x in accounts[:13]]), rule(*[(REGION, x) for x in accounts[13:]])),
            "at most 25 unique destinations")
    a.put_replication_configuration(
        replicationConfiguration=config(rule(*[(REGION, x) for x in accounts[:13]]), rule(*[(REGION, x) for x in accounts[12:25]])))
    assert len(a.describe_registry()["replicationConfiguration"]["rules"]) == 2
    a.put_replication_configuration(replicationConfiguration=kept)
    assert a.describe_registry()["replicationConfiguration"] == kept, "every refusal left the stored one"


def test_only_principals_allowed_the_action_may_configure_replication(berth):
    berth.admin("create-account", OTHER_ACCOUNT)
    key, secret = berth.create_user("reader", policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecr:DescribeRegistry"], "Resource": "*"}]})
    reader = berth.client(key=key, secret=secret)
    assert reader.describe_registry()["replicationConfiguration"] == {"rules": []}
    with pytest.raises(reader.exceptions.ClientError) as e:
        reader.put_replication_configuration(replicationConfiguration=config(rule((REGION, OTHER_ACCOUNT))))
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ecr:PutReplicationConfiguration" in e.value.response["Error"]["Message"]


def test_an_images_replication_status_is_described(berth):
    from conftest import push_image

    a = berth.client()
    a.create_repository(repositoryName="app")
    digest = push_image(berth, "app", "v1", 1)[0]
    # No replication configured: no statuses.
    got = a.describe_image_replication_status(repositoryName="app", imageId={"imageTag": "v1"})
    assert got["repositoryName"] == "app"
    assert got["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert got["replicationStatuses"] == []
    out = json.loads(berth.aws("ecr", "describe-image-replication-status", "--repository-name", "app",
                               "--image-id", f"imageDigest={digest}").stdout)
    assert out["imageId"] == {"imageDigest": digest} and out["replicationStatuses"] == []
    with pytest.raises(a.exceptions.ImageNotFoundException):
        a.describe_image_replication_status(repositoryName="app", imageId={"imageTag": "nope"})
    with pytest.raises(a.exceptions.RepositoryNotFoundException):
        a.describe_image_replication_status(repositoryName="nope", imageId={"imageTag": "v1"})


def registry_policy(source_account, actions):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "ReplicationAccessCrossAccount", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{source_account}:root"},
        "Action": actions, "Resource": f"arn:aws:ecr:{REGION}:{OTHER_ACCOUNT}:repository/*"}]})


def pull(berth, host, token, repo, reference):
    """A manifest and its blobs pulled over /v2/ from `host`'s registry; the manifest's digest."""
    s = requests.Session()
    s.auth = ("AWS", token)
    accept = "application/vnd.oci.image.manifest.v1+json"
    r = s.get(f"{berth.endpoint}/v2/{repo}/manifests/{reference}", headers={"Host": host, "Accept": accept})
    assert r.status_code == 200, r.text
    manifest = r.json()
    for d in [manifest["config"]] + manifest["layers"]:
        b = s.get(f"{berth.endpoint}/v2/{repo}/blobs/{d['digest']}", headers={"Host": host})
        assert b.status_code == 200 and "sha256:" + hashlib.sha256(b.content).hexdigest() == d["digest"]
    return "sha256:" + hashlib.sha256(r.content).hexdigest()


def test_pushes_replicate_into_another_account_as_its_registry_policy_allows(berth):
    from conftest import push_image

    other = berth.admin("create-account", OTHER_ACCOUNT)["AccessKey"]
    b_key, b_secret = other["AccessKeyId"], other["SecretAccessKey"]
    a, b = berth.client(), berth.client(key=b_key, secret=b_secret)
    me = a.describe_registry()["registryId"]
    a.create_repository(repositoryName="team/app")
    a.create_repository(repositoryName="other/app")
    before = push_image(berth, "team/app", "old", 0)[0]
    a.put_replication_configuration(replicationConfiguration=config(rule((REGION, OTHER_ACCOUNT), prefixes=["team/"])))

    # B's registry policy does not allow A yet.
    d1 = push_image(berth, "team/app", "v1", 1)[0]
    assert wait_replicated(a, "team/app", d1) == [
        {"region": REGION, "registryId": OTHER_ACCOUNT, "status": "FAILED", "failureCode": "REPLICATION_NOT_AUTHORIZED"}]
    # ReplicateImage alone: the repository is missing and may not be created.
    b.put_registry_policy(policyText=registry_policy(me, ["ecr:ReplicateImage"]))
    d2 = push_image(berth, "team/app", "v2", 2)[0]
    assert wait_replicated(a, "team/app", d2)[0]["failureCode"] == "REPOSITORY_CREATE_DENIED"
    with pytest.raises(b.exceptions.RepositoryNotFoundException):
        b.describe_repositories(repositoryNames=["team/app"])

    # Both allowed; B's REPLICATION template makes the repository's tags immutable.
    b.create_repository_creation_template(prefix="team", appliedFor=["REPLICATION"], imageTagMutability="IMMUTABLE")
    b.put_registry_policy(policyText=registry_policy(me, ["ecr:ReplicateImage", "ecr:CreateRepository"]))
    d3 = push_image(berth, "team/app", "v3", 3)[0]
    assert wait_replicated(a, "team/app", d3) == [{"region": REGION, "registryId": OTHER_ACCOUNT, "status": "COMPLETE"}]
    repo = b.describe_repositories(repositoryNames=["team/app"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE", "the destination's template, not the source's settings"
    images = b.describe_images(repositoryName="team/app")["imageDetails"]
    assert [(i["imageDigest"], i.get("imageTags")) for i in images] == [(d3, ["v3"])], \
        "only what was pushed after the configuration, and after B allowed it"
    b_host = f"{OTHER_ACCOUNT}.{berth.host}"
    assert pull(berth, b_host, berth.token(b_key, b_secret), "team/app", "v3") == d3

    # An immutable tag B has on another image is not moved: the image arrives untagged, and
    # the job is COMPLETE (not retried).
    d4 = push_image(berth, "team/app", "v3", 4)[0]
    assert wait_replicated(a, "team/app", d4)[0]["status"] == "COMPLETE"
    by_digest = {i["imageDigest"]: i.get("imageTags", []) for i in b.describe_images(repositoryName="team/app")["imageDetails"]}
    assert by_digest == {d3: ["v3"], d4: []}

    # No chaining: B replicating everything back to A does not send A's replicas back.
    b.put_replication_configuration(replicationConfiguration=config(rule((REGION, me))))
    d5 = push_image(berth, "team/app", "v5", 5)[0]
    assert wait_replicated(a, "team/app", d5)[0]["status"] == "COMPLETE"
    assert b.describe_image_replication_status(repositoryName="team/app", imageId={"imageDigest": d5})["replicationStatuses"] == []
    # A repository no rule covers, and an image pushed before the configuration: not replicated.
    d6 = push_image(berth, "other/app", "v1", 6)[0]
    assert a.describe_image_replication_status(repositoryName="other/app", imageId={"imageDigest": d6})["replicationStatuses"] == []
    assert a.describe_image_replication_status(repositoryName="team/app", imageId={"imageDigest": before})["replicationStatuses"] == []
    # A delete at the source leaves the replica.
    a.batch_delete_image(repositoryName="team/app", imageIds=[{"imageDigest": d5}])
    assert b.describe_images(repositoryName="team/app", imageIds=[{"imageDigest": d5}])["imageDetails"][0]["imageTags"] == ["v5"]


def test_a_replica_is_encrypted_by_the_destinations_settings(berth):
    """From a KMS repository into another account: an AES256 replica (no template), then a KMS
    one under the destination's own key (its REPLICATION template); the destination's key
    disabled → FAILED with KMS_KEY_UNAVAILABLE."""
    from conftest import push_image

    other = berth.admin("create-account", OTHER_ACCOUNT)["AccessKey"]
    b_key, b_secret = other["AccessKeyId"], other["SecretAccessKey"]
    a, b = berth.client(), berth.client(key=b_key, secret=b_secret)
    me = a.describe_registry()["registryId"]
    b.put_registry_policy(policyText=registry_policy(me, ["ecr:ReplicateImage", "ecr:CreateRepository"]))
    a_key = berth.client("kms").create_key(Description="source")["KeyMetadata"]
    for name in ("plain/app", "sealed/app"):
        a.create_repository(repositoryName=name,
                            encryptionConfiguration={"encryptionType": "KMS", "kmsKey": a_key["Arn"]})
    b_kms = berth.client("kms", key=b_key, secret=b_secret)
    b_cmk = b_kms.create_key(Description="destination")["KeyMetadata"]
    b.create_repository_creation_template(
        prefix="sealed", appliedFor=["REPLICATION"],
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": b_cmk["Arn"]})
    a.put_replication_configuration(replicationConfiguration=config(rule((REGION, OTHER_ACCOUNT))))
    b_host, b_token = f"{OTHER_ACCOUNT}.{berth.host}", berth.token(b_key, b_secret)

    d1 = push_image(berth, "plain/app", "v1", 1)[0]
    assert wait_replicated(a, "plain/app", d1)[0]["status"] == "COMPLETE"
    repo = b.describe_repositories(repositoryNames=["plain/app"])["repositories"][0]
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}, "never the source's key"
    assert pull(berth, b_host, b_token, "plain/app", "v1") == d1

    d2 = push_image(berth, "sealed/app", "v1", 2)[0]
    assert wait_replicated(a, "sealed/app", d2)[0]["status"] == "COMPLETE"
    repo = b.describe_repositories(repositoryNames=["sealed/app"])["repositories"][0]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": b_cmk["Arn"]}
    assert pull(berth, b_host, b_token, "sealed/app", "v1") == d2

    b_kms.disable_key(KeyId=b_cmk["KeyId"])
    d3 = push_image(berth, "sealed/app", "v2", 3)[0]
    assert wait_replicated(a, "sealed/app", d3)[0] == {
        "region": REGION, "registryId": OTHER_ACCOUNT, "status": "FAILED", "failureCode": "KMS_KEY_UNAVAILABLE"}
    b_kms.enable_key(KeyId=b_cmk["KeyId"])
    with pytest.raises(b.exceptions.ImageNotFoundException):
        b.describe_images(repositoryName="sealed/app", imageIds=[{"imageDigest": d3}])


def test_the_queue_is_shown_by_berth_replication_status_and_metrics(tmp_path):
    """`berth replication status` on the stores (it works beside the server) and the metrics
    the worker and /metrics give: jobs per destination and state, replications finished and
    their lag. One node: the test gives it a metrics address of its own."""
    from conftest import Berth, free_port, push_image

    port = free_port()
    berth = Berth(str(tmp_path), extra_env={"BERTH_METRICS_LISTEN": f"127.0.0.1:{port}"}, cluster=False)
    try:
        other = berth.admin("create-account", OTHER_ACCOUNT)["AccessKey"]
        a, b = berth.client(), berth.client(key=other["AccessKeyId"], secret=other["SecretAccessKey"])
        me = a.describe_registry()["registryId"]
        a.create_repository(repositoryName="team/app")
        a.put_replication_configuration(replicationConfiguration=config(rule((REGION, OTHER_ACCOUNT))))
        d1 = push_image(berth, "team/app", "v1", 1)[0]
        assert wait_replicated(a, "team/app", d1)[0]["failureCode"] == "REPLICATION_NOT_AUTHORIZED"
        b.put_registry_policy(policyText=registry_policy(me, ["ecr:ReplicateImage", "ecr:CreateRepository"]))
        d2 = push_image(berth, "team/app", "v2", 2)[0]
        assert wait_replicated(a, "team/app", d2)[0]["status"] == "COMPLETE"
        status = json.loads(berth.cli("replication", "status").stdout)
        assert status == [{"region": REGION, "registryId": OTHER_ACCOUNT, "waiting": 0, "running": 0,
                           "complete": 1, "failed": 1}]
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics").text
        dest = f'destination="{REGION}/{OTHER_ACCOUNT}"'
        for line in (f'berth_replication_jobs{{{dest},state="failed"}} 1',
                     f'berth_replication_jobs{{{dest},state="complete"}} 1',
                     f'berth_replications_total{{{dest},status="FAILED"}} 1',
                     f'berth_replications_total{{{dest},status="COMPLETE"}} 1',
                     f'berth_replication_lag_seconds_count{{{dest}}} 1'):
            assert line in metrics, f"{line} not in:\n{metrics}"
    finally:
        berth.stop()
