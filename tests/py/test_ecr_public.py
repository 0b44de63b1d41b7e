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


def test_public_repositories_are_their_own_kind(public):
    name = "team/" + "a" * 190  # ECR Public allows 205 characters
    out = json.loads(cli(public, "create-repository", "--repository-name", name,
                         "--catalog-data", json.dumps({"description": "A tool", "architectures": ["x86-64", "ARM 64"],
                                                       "operatingSystems": ["Linux"], "aboutText": "# About",
                                                       "usageText": "docker pull it"}),
                         "--tags", "Key=team,Value=a").stdout)
    alias = client(public).describe_registries()["registries"][0]["aliases"][0]["name"]
    repo = out["repository"]
    assert repo["repositoryArn"] == f"arn:aws:ecr-public::{ACCOUNT_ID}:repository/{name}"
    assert repo["repositoryUri"] == f"{PUBLIC_HOST}/{alias}/{name}"
    assert out["catalogData"]["description"] == "A tool" and out["catalogData"]["marketplaceCertified"] is False
    p = cli(public, "create-repository", "--repository-name", name, check=False)
    assert p.returncode != 0 and "RepositoryAlreadyExistsException" in p.stderr
    p = cli(public, "create-repository", "--repository-name", "x" * 206, check=False)
    assert p.returncode != 0 and "InvalidParameterException" in p.stderr

    # Kept apart: ECR's API and /v2/ on the private host never see it, and a private
    # repository of the same name is another repository.
    ecr = public.client()
    assert ecr.describe_repositories()["repositories"] == []
    ecr.create_repository(repositoryName="shared/name")
    cli(public, "create-repository", "--repository-name", "shared/name")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["shared/name"]
    listed = json.loads(cli(public, "describe-repositories").stdout)["repositories"]
    assert [r["repositoryName"] for r in listed] == ["shared/name", name]
    import requests
    catalog = requests.get(f"{public.endpoint}/v2/_catalog", auth=("AWS", public.token())).json()
    assert catalog["repositories"] == ["shared/name"]

    # Pages, by name.
    for i in range(3):
        client(public).create_repository(repositoryName=f"page/r{i}")
    first = client(public).describe_repositories(maxResults=2)
    assert [r["repositoryName"] for r in first["repositories"]] == ["page/r0", "page/r1"]
    rest = client(public).describe_repositories(maxResults=2, nextToken=first["nextToken"])
    assert [r["repositoryName"] for r in rest["repositories"]] == ["page/r2", "shared/name"]
    assert client(public).describe_repositories(repositoryNames=["page/r1"])["repositories"][0]["repositoryName"] == "page/r1"
    with pytest.raises(Exception) as e:
        client(public).describe_repositories(repositoryNames=["missing/repo"])
    assert "RepositoryNotFoundException" in str(e.value)

    # Catalog data: what a put gives replaces, the rest stays; the logo is never echoed.
    logo = base64.b64encode(b"\x89PNG fake").decode()
    put = client(public).put_repository_catalog_data(repositoryName=name, catalogData={
        "description": "A better tool", "logoImageBlob": base64.b64decode(logo)})["catalogData"]
    assert put["description"] == "A better tool" and put["aboutText"] == "# About" and "logoImageBlob" not in put
    # Shown by its URL on the public host's gallery.
    assert re.fullmatch(r"http://localhost/gallery/-/logo/[a-z]{8}/[a-z/-]+", put["logoUrl"]), put["logoUrl"]
    got = json.loads(cli(public, "get-repository-catalog-data", "--repository-name", name).stdout)["catalogData"]
    assert got == put
    assert got["architectures"] == ["x86-64", "ARM 64"]

    # Deleting: the private repository of the same name stays.
    out = json.loads(cli(public, "delete-repository", "--repository-name", "shared/name").stdout)
    assert out["repository"]["repositoryName"] == "shared/name"
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["shared/name"]
    p = cli(public, "get-repository-catalog-data", "--repository-name", "shared/name", check=False)
    assert p.returncode != 0 and "RepositoryNotFoundException" in p.stderr
    p = cli(public, "describe-repositories", "--registry-id", "999999999999", check=False)
    assert p.returncode != 0 and "InvalidParameterException" in p.stderr


def test_repository_operations_are_authorized_on_the_public_arn(public):
    cli(public, "create-repository", "--repository-name", "team/app")
    cli(public, "create-repository", "--repository-name", "other/app")
    key = public.create_user("teamlead", policy={"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "ecr-public:*",
        "Resource": f"arn:aws:ecr-public::{ACCOUNT_ID}:repository/team/*"}]})
    cli(public, "put-repository-catalog-data", "--repository-name", "team/app", "--catalog-data",
        '{"description": "mine"}', key=key[0], secret=key[1])
    p = cli(public, "put-repository-catalog-data", "--repository-name", "other/app", "--catalog-data",
            '{"description": "not mine"}', check=False, key=key[0], secret=key[1])
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr and "other/app" in p.stderr
    reader = public.create_user("reader", attach="arn:aws:iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly")
    cli(public, "describe-repositories", key=reader[0], secret=reader[1])
    p = cli(public, "delete-repository", "--repository-name", "team/app", check=False, key=reader[0], secret=reader[1])
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr
    # Listings show what the caller may describe; a name it may not is refused.
    listed = json.loads(cli(public, "describe-repositories", key=key[0], secret=key[1]).stdout)["repositories"]
    assert [r["repositoryName"] for r in listed] == ["team/app"]
    p = cli(public, "describe-repositories", "--repository-names", "other/app", check=False, key=key[0], secret=key[1])
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr
    # A tagging operation is authorized on the repository its resourceArn names, whatever else
    # the request carries.
    tagger = client(public, key=key[0], secret=key[1])
    other_arn = f"arn:aws:ecr-public::{ACCOUNT_ID}:repository/other/app"
    status, body = raw_call(public, "TagResource", {"resourceArn": other_arn, "repositoryName": "team/app",
                                                    "tags": [{"Key": "x", "Value": "y"}]}, key)
    assert status == 403 and body["__type"] == "AccessDeniedException", body
    assert client(public).list_tags_for_resource(resourceArn=other_arn)["tags"] == []
    # Tag conditions see the request's tags.
    public.client("iam").put_user_policy(UserName="teamlead", PolicyName="no-owner", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "ecr-public:TagResource", "Resource": "*",
                                                "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner"]}}}]}))
    team_arn = f"arn:aws:ecr-public::{ACCOUNT_ID}:repository/team/app"
    tagger.tag_resource(resourceArn=team_arn, tags=[{"Key": "env", "Value": "dev"}])
    with pytest.raises(tagger.exceptions.ClientError) as e:
        tagger.tag_resource(resourceArn=team_arn, tags=[{"Key": "owner", "Value": "me"}])
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"


def test_the_public_token_is_not_the_private_registrys(public):
    import requests

    password = cli(public, "get-login-password").stdout.strip()
    r = requests.get(f"{public.endpoint}/v2/", auth=("AWS", password))
    assert r.status_code == 401, r.text
    assert requests.get(f"{public.endpoint}/v2/", auth=("AWS", public.token())).status_code == 200


def test_tags_of_public_repositories(public):
    arn = json.loads(cli(public, "create-repository", "--repository-name", "tagged/app", "--tags",
                         "Key=team,Value=a").stdout)["repository"]["repositoryArn"]
    cli(public, "tag-resource", "--resource-arn", arn, "--tags", "Key=env,Value=prod", "Key=team,Value=b")
    tags = json.loads(cli(public, "list-tags-for-resource", "--resource-arn", arn).stdout)["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "b")]
    cli(public, "untag-resource", "--resource-arn", arn, "--tag-keys", "team")
    assert client(public).list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "env", "Value": "prod"}]
    # Another account's ARN, a private repository's ARN, a missing repository.
    for bad, error in [
        (arn.replace(ACCOUNT_ID, "999999999999"), "InvalidParameterException"),
        (f"arn:aws:ecr:{public.region}:{ACCOUNT_ID}:repository/tagged/app", "InvalidParameterException"),
        (arn.replace("tagged/app", "missing/app"), "RepositoryNotFoundException"),
    ]:
        p = cli(public, "list-tags-for-resource", "--resource-arn", bad, check=False)
        assert p.returncode != 0 and error in p.stderr, (bad, p.stderr)
    p = cli(public, "tag-resource", "--resource-arn", arn, "--tags",
            *[f"Key=k{i},Value=v" for i in range(50)], check=False)
    assert p.returncode != 0 and "TooManyTagsException" in p.stderr, p.stderr


def push_through_the_api(ecr_public, repo, tag, seed):
    """An OCI image pushed with the ECR Public API's layer operations and PutImage."""
    import hashlib

    def layer(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        upload = ecr_public.initiate_layer_upload(repositoryName=repo)
        part = ecr_public.upload_layer_part(repositoryName=repo, uploadId=upload["uploadId"], partFirstByte=0,
                                            partLastByte=len(data) - 1, layerPartBlob=data)
        assert part["lastByteReceived"] == len(data) - 1 and part["repositoryName"] == repo
        done = ecr_public.complete_layer_upload(repositoryName=repo, uploadId=upload["uploadId"], layerDigests=[digest])
        assert done["layerDigest"] == digest and done["repositoryName"] == repo
        return {"digest": digest, "size": len(data)}

    config = layer(json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode())
    content = layer(f"layer {seed}".encode() * 10)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **content}],
    })
    put = ecr_public.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag,
                               imageManifestMediaType="application/vnd.oci.image.manifest.v1+json")
    assert put["image"]["repositoryName"] == repo and put["image"]["imageId"]["imageTag"] == tag
    return put["image"]["imageId"]["imageDigest"], manifest, content["digest"]


def test_images_of_public_repositories_through_the_api(public):
    pub = client(public)
    pub.create_repository(repositoryName="tools/cli")
    digest, manifest, layer = push_through_the_api(pub, "tools/cli", "v1", 1)
    # The same image under the same tag again is ImageAlreadyExists, as in ECR; another tag is fine.
    with pytest.raises(pub.exceptions.ImageAlreadyExistsException):
        pub.put_image(repositoryName="tools/cli", imageManifest=manifest, imageTag="v1")
    pub.put_image(repositoryName="tools/cli", imageManifest=manifest, imageTag="latest")

    details = json.loads(cli(public, "describe-images", "--repository-name", "tools/cli").stdout)["imageDetails"]
    assert [(d["imageDigest"], sorted(d["imageTags"])) for d in details] == [(digest, ["latest", "v1"])]
    assert details[0]["repositoryName"] == "tools/cli" and details[0]["registryId"] == ACCOUNT_ID
    tags = json.loads(cli(public, "describe-image-tags", "--repository-name", "tools/cli").stdout)["imageTagDetails"]
    assert [t["imageTag"] for t in tags] == ["latest", "v1"]
    # Paged by tag.
    pub.put_image(repositoryName="tools/cli", imageManifest=manifest, imageTag="stable")
    first = pub.describe_image_tags(repositoryName="tools/cli", maxResults=2)
    assert [t["imageTag"] for t in first["imageTagDetails"]] == ["latest", "stable"]
    rest = pub.describe_image_tags(repositoryName="tools/cli", maxResults=2, nextToken=first["nextToken"])
    assert [t["imageTag"] for t in rest["imageTagDetails"]] == ["v1"] and "nextToken" not in rest
    pub.batch_delete_image(repositoryName="tools/cli", imageIds=[{"imageTag": "stable"}])
    assert {t["imageDetail"]["imageDigest"] for t in tags} == {digest}
    avail = pub.batch_check_layer_availability(repositoryName="tools/cli", layerDigests=[layer, "sha256:" + "0" * 64])
    assert [x["layerAvailability"] for x in avail["layers"]] == ["AVAILABLE"]
    assert [f["failureCode"] for f in avail["failures"]] == ["MissingLayerDigest"]

    # Kept apart: ECR's API has no such repository.
    with pytest.raises(public.client().exceptions.RepositoryNotFoundException):
        public.client().describe_images(repositoryName="tools/cli")
    # A push to a public repository that does not exist is refused (no create on push).
    with pytest.raises(pub.exceptions.RepositoryNotFoundException):
        pub.initiate_layer_upload(repositoryName="tools/missing")
    with pytest.raises(pub.exceptions.UploadNotFoundException):
        pub.upload_layer_part(repositoryName="tools/cli", uploadId="0b8a6b6c-7c4e-4f4e-9d1f-2f5e6a7b8c9d",
                              partFirstByte=0, partLastByte=0, layerPartBlob=b"x")

    deleted = pub.batch_delete_image(repositoryName="tools/cli", imageIds=[{"imageTag": "latest"}])
    assert [i["imageTag"] for i in deleted["imageIds"]] == ["latest"]
    pub.batch_delete_image(repositoryName="tools/cli", imageIds=[{"imageDigest": digest}])
    assert pub.describe_images(repositoryName="tools/cli")["imageDetails"] == []
    # Holding images, a repository is deleted only by force.
    push_through_the_api(pub, "tools/cli", "v2", 2)
    with pytest.raises(pub.exceptions.RepositoryNotEmptyException):
        pub.delete_repository(repositoryName="tools/cli")
    pub.delete_repository(repositoryName="tools/cli", force=True)


def test_repository_policies_of_public_repositories(public):
    cli(public, "create-repository", "--repository-name", "guarded/app")
    admin = public.create_user("admin", attach="arn:aws:iam::aws:policy/AmazonElasticContainerRegistryPublicFullAccess")
    deny = {"Version": "2012-10-17", "Statement": [{
        "Sid": "NoCatalogEdits", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/admin"},
        "Action": "ecr-public:PutRepositoryCatalogData"}]}
    out = json.loads(cli(public, "set-repository-policy", "--repository-name", "guarded/app",
                         "--policy-text", json.dumps(deny)).stdout)
    assert out["repositoryName"] == "guarded/app" and json.loads(out["policyText"]) == deny
    assert json.loads(cli(public, "get-repository-policy", "--repository-name", "guarded/app").stdout)["policyText"]
    # The policy is evaluated: the user's identity policy allows, the repository's denies.
    p = cli(public, "put-repository-catalog-data", "--repository-name", "guarded/app", "--catalog-data",
            '{"description": "x"}', check=False, key=admin[0], secret=admin[1])
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr and "explicit deny" in p.stderr.lower(), p.stderr
    cli(public, "describe-repositories", "--repository-names", "guarded/app", key=admin[0], secret=admin[1])

    # The lockout check, and force.
    lockout = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "ecr-public:SetRepositoryPolicy"}]}
    p = cli(public, "set-repository-policy", "--repository-name", "guarded/app", "--policy-text",
            json.dumps(lockout), check=False)
    assert p.returncode != 0 and "InvalidParameterException" in p.stderr and "force" in p.stderr, p.stderr
    p = cli(public, "set-repository-policy", "--repository-name", "guarded/app", "--policy-text", "{not json", check=False)
    assert p.returncode != 0 and "InvalidParameterException" in p.stderr

    out = json.loads(cli(public, "delete-repository-policy", "--repository-name", "guarded/app").stdout)
    assert json.loads(out["policyText"]) == deny
    p = cli(public, "get-repository-policy", "--repository-name", "guarded/app", check=False)
    assert p.returncode != 0 and "RepositoryPolicyNotFoundException" in p.stderr and "guarded/app" in p.stderr, p.stderr
    cli(public, "put-repository-catalog-data", "--repository-name", "guarded/app", "--catalog-data",
        '{"description": "x"}', key=admin[0], secret=admin[1])


def test_every_operation_of_the_ecr_public_model_is_served(public):
    """botocore's ECR Public model: no operation answers UnknownOperationException."""
    import botocore.session
    from botocore.config import Config

    model = botocore.session.get_session().get_service_model("ecr-public")
    raw = boto3.client("ecr-public", endpoint_url=public.endpoint, region_name="us-east-1", aws_access_key_id=KEY_ID,
                       aws_secret_access_key=SECRET, config=Config(parameter_validation=False))
    unserved = []
    for op in model.operation_names:
        try:
            raw._make_api_call(op, {})
        except raw.exceptions.ClientError as e:
            if e.response["Error"]["Code"] == "UnknownOperationException":
                unserved.append(op)
    assert len(model.operation_names) == 23
    assert unserved == []


def raw_call(berth, op, body, key=(KEY_ID, SECRET)):
    """A SigV4-signed ECR Public call with exactly `body` (botocore would drop members its
    model does not have); returns (HTTP status, JSON body)."""
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = json.dumps(body)
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"SpencerFrontendService.{op}"}
    req = AWSRequest(method="POST", url=berth.endpoint + "/", data=data, headers=headers)
    SigV4Auth(Credentials(*key), "ecr-public", "us-east-1").add_auth(req)
    r = requests.post(berth.endpoint + "/", data=data, headers=dict(req.headers))
    return r.status_code, r.json()
