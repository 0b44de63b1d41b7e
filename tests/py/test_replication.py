"""Replication (issue 17), first part: the registry's replication configuration through the ECR
API — PutReplicationConfiguration checked as ECR checks it and DescribeRegistry returning it,
per account — with boto3 and the AWS CLI. Images are not replicated yet."""
import json

import pytest

from conftest import REGION

OTHER_ACCOUNT = "987654321098"


def config(*rules):
    return {"rules": list(rules)}


def rule(*destinations, prefixes=None):
    r = {"destinations": [{"region": reg, "registryId": rid} for reg, rid in destinations]}
    if prefixes is not None:
        r["repositoryFilters"] = [{"filter": p, "filterType": "PREFIX_MATCH"} for p in prefixes]
    return r


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
    # Nothing is replicated yet (the worker is the next part of issue 17): no statuses.
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
