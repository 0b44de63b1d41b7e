"""The IAM Query API subset, driven by the real `aws iam` CLI and boto3 against Berth's own
endpoint: users, access keys, inline and managed policies, groups; the keys it creates work on
the ECR API with the permissions its policies give."""
import json

import pytest

from conftest import ACCOUNT_ID


def test_aws_iam_cli_manages_users_and_policies(berth, tmp_path):
    out = json.loads(berth.aws("iam", "create-user", "--user-name", "deployer").stdout)
    assert out["User"]["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:user/deployer"
    assert out["User"]["UserId"].startswith("AIDA")
    key = json.loads(berth.aws("iam", "create-access-key", "--user-name", "deployer").stdout)["AccessKey"]
    assert key["Status"] == "Active" and key["SecretAccessKey"]
    users = json.loads(berth.aws("iam", "list-users").stdout)["Users"]
    assert [u["UserName"] for u in users] == ["deployer"]

    deployer = berth.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    with pytest.raises(deployer.exceptions.ClientError) as e:
        deployer.get_authorization_token()
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    # DescribeRepositories without names lists what the caller may describe: nothing yet.
    berth.client().create_repository(repositoryName="svc")
    assert deployer.describe_repositories()["repositories"] == []

    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:DescribeRepositories"], "Resource": "*"}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy))
    berth.aws("iam", "put-user-policy", "--user-name", "deployer", "--policy-name", "describe",
              "--policy-document", f"file://{path}")
    got = json.loads(berth.aws("iam", "get-user-policy", "--user-name", "deployer", "--policy-name", "describe").stdout)
    assert got["PolicyDocument"] == policy, "the CLI decodes IAM's URL-encoded document"
    assert json.loads(berth.aws("iam", "list-user-policies", "--user-name", "deployer").stdout)["PolicyNames"] == ["describe"]
    assert [r["repositoryName"] for r in deployer.describe_repositories()["repositories"]] == ["svc"]

    # A customer-managed policy, attached through a group.
    push = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [
        "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload", "ecr:PutImage"], "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT_ID}:repository/svc"}]}
    path.write_text(json.dumps(push))
    created = json.loads(berth.aws("iam", "create-policy", "--policy-name", "push-svc",
                                   "--policy-document", f"file://{path}").stdout)["Policy"]
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:policy/push-svc"
    berth.aws("iam", "create-group", "--group-name", "pushers")
    berth.aws("iam", "add-user-to-group", "--group-name", "pushers", "--user-name", "deployer")
    berth.aws("iam", "attach-group-policy", "--group-name", "pushers", "--policy-arn", created["Arn"])
    group = json.loads(berth.aws("iam", "get-group", "--group-name", "pushers").stdout)
    assert [u["UserName"] for u in group["Users"]] == ["deployer"]
    attached = json.loads(berth.aws("iam", "list-attached-group-policies", "--group-name", "pushers").stdout)
    assert attached["AttachedPolicies"] == [{"PolicyName": "push-svc", "PolicyArn": created["Arn"]}]
    assert json.loads(berth.aws("iam", "get-policy", "--policy-arn", created["Arn"]).stdout)["Policy"]["AttachmentCount"] == 1

    # The deployer's token now pushes to svc, and nowhere else.
    import hashlib

    import requests

    s = requests.Session()
    s.auth = ("AWS", berth.token(key["AccessKeyId"], key["SecretAccessKey"]))
    blob = b"layer bytes"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    assert s.post(f"{berth.endpoint}/v2/svc/blobs/uploads/?digest={digest}", data=blob).status_code == 201
    berth.client().create_repository(repositoryName="other")
    assert s.post(f"{berth.endpoint}/v2/other/blobs/uploads/?digest={digest}", data=blob).status_code == 403

    # AWS-managed policies attach by ARN.
    berth.aws("iam", "attach-user-policy", "--user-name", "deployer", "--policy-arn",
              "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    listed = json.loads(berth.aws("iam", "list-attached-user-policies", "--user-name", "deployer").stdout)
    assert listed["AttachedPolicies"][0]["PolicyName"] == "AmazonEC2ContainerRegistryReadOnly"


def test_iam_errors_are_iams(berth):
    iam = berth.client("iam")
    iam.create_user(UserName="dup")
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_user(UserName="dup")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName="ghost")
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException) as e:
        iam.put_user_policy(UserName="dup", PolicyName="bad",
                            PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*"}]}')
    assert "Resource" in str(e.value)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.attach_user_policy(UserName="dup", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    iam.put_user_policy(UserName="dup", PolicyName="p",
                        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}')
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_user(UserName="dup")
    iam.delete_user_policy(UserName="dup", PolicyName="p")
    iam.delete_user(UserName="dup")
    assert iam.list_users()["Users"] == []
    # The root's own identity without a user name.
    assert iam.get_user()["User"]["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:root"

    # A user without iam:* permissions may not manage IAM.
    iam.create_user(UserName="plain")
    key = iam.create_access_key(UserName="plain")["AccessKey"]
    plain = berth.client("iam", key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    with pytest.raises(plain.exceptions.ClientError) as e:
        plain.create_user(UserName="escalate")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
