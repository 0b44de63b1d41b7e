"""ECR Public (#18), the public registry so far: the `aws ecr-public` API's front door
(SpencerFrontendService, SigV4 service ecr-public, us-east-1 or the deployment's region),
GetAuthorizationToken (which needs sts:GetServiceBearerToken too), DescribeRegistries with the
registry alias (`berth admin set-registry-alias`), the registry catalog data, and the
AWS-managed ECR Public policies — through the AWS CLI and boto3."""
import base64
import json
import os
import re
import subprocess
import tempfile

import boto3
import pytest
from conftest import ACCOUNT_ID, KEY_ID, SECRET, Berth, berth_bin

PUBLIC_HOST = "localhost"


@pytest.fixture
def public():
    with tempfile.TemporaryDirectory() as d:
        b = Berth(d, extra_env={"BERTH_PUBLIC_HOST": PUBLIC_HOST})
        yield b
        b.stop()


def client(berth, region="us-east-1", key=KEY_ID, secret=SECRET):
    return boto3.client("ecr-public", endpoint_url=berth.endpoint, region_name=region,
                        aws_access_key_id=key, aws_secret_access_key=secret)


def cli(berth, *args, check=True, key=KEY_ID, secret=SECRET):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_PROFILE", None)
    p = subprocess.run(["aws", "ecr-public", *args, "--endpoint-url", berth.endpoint, "--output", "json"],
                       capture_output=True, text=True, env=env)
    if check:
        assert p.returncode == 0, f"aws ecr-public {' '.join(args)} failed: {p.stderr}"
    return p


def test_the_registry_its_alias_and_catalog_data(public):
    registries = json.loads(cli(public, "describe-registries").stdout)["registries"]
    assert len(registries) == 1
    r = registries[0]
    alias = r["aliases"][0]["name"]
    assert re.fullmatch("[a-z]{8}", alias), alias
    assert r["registryId"] == ACCOUNT_ID
    assert r["registryArn"] == f"arn:aws:ecr-public::{ACCOUNT_ID}:registry/{ACCOUNT_ID}"
    assert r["registryUri"] == f"{PUBLIC_HOST}/{alias}"
    assert r["aliases"][0] == {"name": alias, "status": "ACTIVE", "primaryRegistryAlias": True,
                               "defaultRegistryAlias": True}
    # The same alias every time.
    assert json.loads(cli(public, "describe-registries").stdout)["registries"][0]["aliases"][0]["name"] == alias

    out = public.admin("set-registry-alias", "team-a")
    assert out == {"registryId": ACCOUNT_ID, "alias": "team-a"}
    r = client(public).describe_registries()["registries"][0]
    assert r["registryUri"] == f"{PUBLIC_HOST}/team-a"
    # Another account cannot take it; a malformed alias is refused.
    other = "210987654321"
    public.admin("create-account", other)
    p = subprocess.run([berth_bin(), "admin", "set-registry-alias", "team-a", "--account-id", other, "--data-dir",
                        os.path.join(public.data_dir, "data")], capture_output=True, text=True,
                       env=dict(os.environ, **public.command_env))
    assert p.returncode != 0 and "held by another account" in p.stderr, p.stderr
    p = subprocess.run([berth_bin(), "admin", "set-registry-alias", "Bad-Alias", "--data-dir",
                        os.path.join(public.data_dir, "data")], capture_output=True, text=True,
                       env=dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT_ID, **public.command_env))
    assert p.returncode != 0 and "lowercase" in p.stderr, p.stderr

    assert json.loads(cli(public, "get-registry-catalog-data").stdout) == {"registryCatalogData": {}}
    out = json.loads(cli(public, "put-registry-catalog-data", "--display-name", "Team A").stdout)
    assert out["registryCatalogData"] == {"displayName": "Team A"}
    assert client(public).get_registry_catalog_data()["registryCatalogData"] == {"displayName": "Team A"}
    p = cli(public, "put-registry-catalog-data", "--display-name", "x" * 101, check=False)
    assert p.returncode != 0 and "InvalidParameterException" in p.stderr, p.stderr


def test_authorization_tokens_need_the_sts_permission_too(public):
    password = cli(public, "get-login-password").stdout.strip()
    data = client(public).get_authorization_token()["authorizationData"]
    user, token = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS" and token.startswith("berth1.") and password.startswith("berth1.")
    # Signed for the deployment's region too; another region is refused.
    client(public, region=public.region).get_authorization_token()
    with pytest.raises(Exception) as e:
        client(public, region="eu-west-3").get_authorization_token()
    assert "region" in str(e.value)

    no_sts = public.create_user("pusher", policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr-public:*", "Resource": "*"}]})
    p = cli(public, "get-login-password", check=False, key=no_sts[0], secret=no_sts[1])
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr and "sts:GetServiceBearerToken" in p.stderr

    reader = public.create_user("reader", attach="arn:aws:iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly")
    cli(public, "get-login-password", key=reader[0], secret=reader[1])
    cli(public, "describe-registries", key=reader[0], secret=reader[1])
    p = cli(public, "put-registry-catalog-data", "--display-name", "nope", check=False, key=reader[0], secret=reader[1])
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr and "ecr-public:PutRegistryCatalogData" in p.stderr
    full = public.create_user("admin", attach="arn:aws:iam::aws:policy/AmazonElasticContainerRegistryPublicFullAccess")
    cli(public, "put-registry-catalog-data", "--display-name", "ok", key=full[0], secret=full[1])


def test_ecr_public_is_off_without_a_public_host(berth):
    p = cli(berth, "describe-registries", check=False)
    assert p.returncode != 0 and "UnsupportedCommandException" in p.stderr, p.stderr
    # ECR's own API does not see anything of it.
    assert berth.client().describe_repositories()["repositories"] == []
