"""The ECR API with the real AWS CLI and boto3: every implemented operation's success path,
pagination across pages, and each error as the botocore model names it (boto3 raises the
modelled exception class, which proves the error shape parses with botocore's own parser)."""
import json

import botocore.exceptions
import pytest

from conftest import ACCOUNT_ID, REGION, berth_api, push_image


def test_cli_create_describe_delete(berth):
    out = json.loads(
        berth.aws(
            "ecr", "create-repository", "--repository-name", "my-app", "--image-tag-mutability", "IMMUTABLE",
            "--image-scanning-configuration", "scanOnPush=true",
        ).stdout
    )
    repo = out["repository"]
    assert repo["repositoryName"] == "my-app"
    assert repo["registryId"] == ACCOUNT_ID
    assert repo["repositoryArn"] == f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/my-app"
    assert repo["repositoryUri"] == f"{berth.host}/my-app"
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}

    described = json.loads(berth.aws("ecr", "describe-repositories", "--repository-names", "my-app").stdout)
    assert described["repositories"][0]["repositoryName"] == "my-app"

    again = berth.aws("ecr", "create-repository", "--repository-name", "my-app", check=False)
    assert again.returncode != 0 and "RepositoryAlreadyExistsException" in again.stderr

    deleted = json.loads(berth.aws("ecr", "delete-repository", "--repository-name", "my-app").stdout)
    assert deleted["repository"]["repositoryName"] == "my-app"
    gone = berth.aws("ecr", "describe-repositories", "--repository-names", "my-app", check=False)
    assert "RepositoryNotFoundException" in gone.stderr
    assert "The repository with name 'my-app' does not exist in the registry with id '123456789012'" in gone.stderr


def test_boto3_errors_are_the_modelled_exceptions(berth):
    ecr = berth.client()
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=["missing"])
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.delete_repository(repositoryName="missing")
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.create_repository(repositoryName="Bad_Name")
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.create_repository(repositoryName="ok-name", imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
    with pytest.raises(ecr.exceptions.InvalidTagParameterException):
        ecr.create_repository(repositoryName="tagged", tags=[{"Key": "aws:reserved", "Value": "x"}])
    with pytest.raises(ecr.exceptions.TooManyTagsException):
        ecr.create_repository(repositoryName="tagged", tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    ecr.create_repository(repositoryName="dup")
    with pytest.raises(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName="dup")
    # Not empty: refused without force, deleted with it.
    push_image(berth, "dup", "v1", 1)
    with pytest.raises(ecr.exceptions.RepositoryNotEmptyException):
        ecr.delete_repository(repositoryName="dup")
    ecr.delete_repository(repositoryName="dup", force=True)
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=["dup"])
    # An operation the model does not have is refused, not faked.
    status, body = berth_api(berth, "ListEverything", {}, target="AmazonEC2ContainerRegistry_V20150921")
    assert status == 400 and body["__type"] == "UnknownOperationException"


def test_pagination_across_pages(berth):
    ecr = berth.client()
    names = [f"page/repo{i:02}" for i in range(7)]
    for n in names:
        ecr.create_repository(repositoryName=n)
    first = ecr.describe_repositories(maxResults=3)
    assert len(first["repositories"]) == 3 and "nextToken" in first
    seen = []
    for page in ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 2}):
        assert len(page["repositories"]) <= 2
        seen += [r["repositoryName"] for r in page["repositories"]]
    assert seen == names
    cli = json.loads(berth.aws("ecr", "describe-repositories", "--page-size", "3").stdout)
    assert [r["repositoryName"] for r in cli["repositories"]] == names
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.describe_repositories(nextToken="!!not-a-token!!")


def test_settings_templates_and_tags(berth):
    ecr = berth.client()
    key_arn = berth.client("kms").create_key()["KeyMetadata"]["Arn"]
    ecr.create_repository(
        repositoryName="conf/app",
        tags=[{"Key": "team", "Value": "core"}],
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key_arn},
    )
    r = ecr.put_image_tag_mutability(
        repositoryName="conf/app",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}],
    )
    assert r["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert r["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "latest"}]
    r = ecr.put_image_scanning_configuration(repositoryName="conf/app", imageScanningConfiguration={"scanOnPush": True})
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    repo = ecr.describe_repositories(repositoryNames=["conf/app"])["repositories"][0]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key_arn}
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert tags == [{"Key": "team", "Value": "core"}]

    t = ecr.create_repository_creation_template(
        prefix="prod", appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE", description="production"
    )["repositoryCreationTemplate"]
    assert t["prefix"] == "prod" and t["appliedFor"] == ["CREATE_ON_PUSH"] and "createdAt" in t
    with pytest.raises(ecr.exceptions.TemplateAlreadyExistsException):
        ecr.create_repository_creation_template(prefix="prod", appliedFor=["CREATE_ON_PUSH"])
    u = ecr.update_repository_creation_template(prefix="prod", description="prod images")["repositoryCreationTemplate"]
    assert u["description"] == "prod images" and u["imageTagMutability"] == "IMMUTABLE"
    listed = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [x["prefix"] for x in listed] == ["prod"]
    # The template creates prod/… repositories on push, with its settings.
    push_image(berth, "prod/api", "v1", 2)
    created = ecr.describe_repositories(repositoryNames=["prod/api"])["repositories"][0]
    assert created["imageTagMutability"] == "IMMUTABLE"
    ecr.delete_repository_creation_template(prefix="prod")
    with pytest.raises(ecr.exceptions.TemplateNotFoundException):
        ecr.delete_repository_creation_template(prefix="prod")
    with pytest.raises(ecr.exceptions.TemplateNotFoundException):
        ecr.update_repository_creation_template(prefix="prod", description="x")

    registry = ecr.describe_registry()
    assert registry["registryId"] == ACCOUNT_ID
    data = ecr.get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == berth.endpoint


def test_bad_credentials(berth):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        berth.client(secret="wrong").describe_repositories()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        berth.client(key="AKIANOSUCHKEY0000000").describe_repositories()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert e.value.response["Error"]["Message"] == "The security token included in the request is invalid."
