"""Access control in the IAM policy language, end to end: identity policies set with
`berth admin`, repository and registry policies set with the AWS CLI and boto3, enforced on the
ECR API and on /v2/ (with plain HTTP and with the Docker engine), source-address conditions
from a client bound to 127.0.0.2, catalog filtering, and blobs never readable through a
repository the caller may not read."""
import http.client
import json
import subprocess
import tarfile

import pytest
import requests

import os

from conftest import ACCOUNT_ID, KEY_ID, REGION, SECRET, berth_bin, push_image

READ_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
OCI = "application/vnd.oci.image.manifest.v1+json"
REPO_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository"


def v2(berth, key, secret):
    s = requests.Session()
    s.auth = ("AWS", berth.token(key, secret))
    s.headers["Accept"] = OCI
    return s


def error_code(resp):
    return resp.json()["errors"][0]["code"]


def test_read_only_user_pulls_but_cannot_push(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="app")
    digest, manifest, layer = push_image(berth, "app", "v1", 1)
    key, secret = berth.create_user("reader", attach=READ_ONLY)
    reader = berth.client(key=key, secret=secret)

    assert reader.describe_images(repositoryName="app")["imageDetails"][0]["imageDigest"] == digest
    assert reader.batch_get_image(repositoryName="app", imageIds=[{"imageTag": "v1"}])["images"]
    with pytest.raises(reader.exceptions.ClientError) as e:
        reader.put_image(repositoryName="app", imageManifest=manifest, imageTag="v2")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    msg = e.value.response["Error"]["Message"]
    assert f"User: arn:aws:iam::{ACCOUNT_ID}:user/reader is not authorized to perform: ecr:PutImage" in msg
    assert f"{REPO_ARN}/app" in msg
    with pytest.raises(reader.exceptions.ClientError) as e:
        reader.create_repository(repositoryName="mine")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    s = v2(berth, key, secret)
    assert s.get(f"{berth.endpoint}/v2/app/manifests/v1").status_code == 200
    assert s.get(f"{berth.endpoint}/v2/app/blobs/{layer}").status_code == 200
    r = s.post(f"{berth.endpoint}/v2/app/blobs/uploads/")
    assert r.status_code == 403 and error_code(r) == "DENIED", r.text
    r = s.put(f"{berth.endpoint}/v2/app/manifests/v2", data=manifest, headers={"Content-Type": OCI})
    assert r.status_code == 403 and error_code(r) == "DENIED"
    r = s.delete(f"{berth.endpoint}/v2/app/manifests/{digest}")
    assert r.status_code == 403 and "ecr:BatchDeleteImage" in r.json()["errors"][0]["message"]

    # A user with no policy at all may not even get a token.
    key2, secret2 = berth.create_user("nobody")
    with pytest.raises(Exception) as e:
        berth.client(key=key2, secret=secret2).get_authorization_token()
    assert "AccessDeniedException" in str(e.value)


def test_docker_push_refused_as_denied(berth, docker, tmp_path):
    ecr = berth.client()
    ecr.create_repository(repositoryName="app")
    key, secret = berth.create_user("puller", attach=READ_ONLY)
    token = berth.token(key, secret)
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=token)
    # Root pushes an image; the read-only user pulls it, and cannot push.
    root_token = berth.token()
    import tarfile

    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as t:
        f = tmp_path / "hello.txt"
        f.write_text("hello from the policy test\n")
        t.add(f, arcname="hello.txt")
    docker.run("import", str(rootfs), f"{berth.host}/app:v1")
    docker.run("logout", berth.host)
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=root_token)
    docker.run("push", f"{berth.host}/app:v1")
    docker.run("logout", berth.host)
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=token)
    docker.run("rmi", f"{berth.host}/app:v1")
    docker.run("pull", f"{berth.host}/app:v1")
    docker.run("tag", f"{berth.host}/app:v1", f"{berth.host}/app:v2")
    out = docker.run("push", f"{berth.host}/app:v2", check=False)
    assert out.returncode != 0
    assert "denied" in (out.stdout + out.stderr), out.stdout + out.stderr


def get_from(host, path, token, source):
    """A GET from a client bound to `source` (127.0.0.2 is another loopback address)."""
    h, p = host.split(":")
    conn = http.client.HTTPConnection(h, int(p), source_address=(source, 0), timeout=10)
    import base64

    auth = base64.b64encode(f"AWS:{token}".encode()).decode()
    conn.request("GET", path, headers={"Authorization": f"Basic {auth}", "Accept": OCI})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def test_source_ip_condition(berth):
    berth.client().create_repository(repositoryName="app")
    push_image(berth, "app", "v1", 1)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
            {"Sid": "NotFromTwo", "Effect": "Deny", "Action": "ecr:*", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.2/32"}}},
        ],
    }
    key, secret = berth.create_user("ipbound", policy=policy)
    token = berth.token(key, secret)
    status, _ = get_from(berth.host, "/v2/app/manifests/v1", token, "127.0.0.1")
    assert status == 200
    status, body = get_from(berth.host, "/v2/app/manifests/v1", token, "127.0.0.2")
    assert status == 403 and json.loads(body)["errors"][0]["code"] == "DENIED", body
    assert b"explicit deny" in body

    # The same through the ECR API, signed by curl itself, from each address.
    def describe(source):
        return subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", source,
             "--aws-sigv4", f"aws:amz:{REGION}:ecr", "--user", f"{key}:{secret}",
             "-H", "Content-Type: application/x-amz-json-1.1",
             "-H", "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
             "--data", "{}", f"{berth.endpoint}/"],
            capture_output=True, text=True,
        ).stdout
    assert describe("127.0.0.1") == "200"
    assert describe("127.0.0.2") == "403"


def test_repository_policy_grants_and_delegates(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="shared")
    push_image(berth, "shared", "v1", 1)
    key, secret = berth.create_user("guest")
    guest = berth.client(key=key, secret=secret)
    with pytest.raises(guest.exceptions.ClientError):
        guest.batch_get_image(repositoryName="shared", imageIds=[{"imageTag": "v1"}])

    # Naming the user itself is enough within the account.
    grant_user = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "GuestPull", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/guest"},
                       "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}],
    }
    out = json.loads(berth.aws("ecr", "set-repository-policy", "--repository-name", "shared",
                               "--policy-text", json.dumps(grant_user)).stdout)
    assert json.loads(out["policyText"]) == grant_user
    assert json.loads(ecr.get_repository_policy(repositoryName="shared")["policyText"]) == grant_user
    assert guest.batch_get_image(repositoryName="shared", imageIds=[{"imageTag": "v1"}])["images"]
    with pytest.raises(guest.exceptions.ClientError):
        guest.describe_images(repositoryName="shared")

    # Naming only the account delegates to the account: the user's own policy must allow too.
    grant_account = json.loads(json.dumps(grant_user))
    grant_account["Statement"][0]["Principal"] = {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    ecr.set_repository_policy(repositoryName="shared", policyText=json.dumps(grant_account))
    with pytest.raises(guest.exceptions.ClientError) as e:
        guest.batch_get_image(repositoryName="shared", imageIds=[{"imageTag": "v1"}])
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    # Malformed policies are refused with what is wrong, and never stored.
    with pytest.raises(ecr.exceptions.InvalidParameterException) as e:
        ecr.set_repository_policy(repositoryName="shared", policyText='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*"}]}')
    assert "Principal" in str(e.value)
    with pytest.raises(ecr.exceptions.InvalidParameterException) as e:
        ecr.set_repository_policy(repositoryName="shared", policyText='{"Statement": [{"Effect": "Maybe"}]}')
    assert "Effect" in str(e.value)
    assert json.loads(ecr.get_repository_policy(repositoryName="shared")["policyText"]) == grant_account

    deleted = ecr.delete_repository_policy(repositoryName="shared")
    assert json.loads(deleted["policyText"]) == grant_account
    with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
        ecr.get_repository_policy(repositoryName="shared")
    with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
        ecr.delete_repository_policy(repositoryName="shared")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.get_repository_policy(repositoryName="nope")


def test_lockout_check_and_force(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="locked")
    key, secret = berth.create_user("admin2", policy={
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]})
    admin2 = berth.client(key=key, secret=secret)
    deny_me = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/admin2"},
                       "Action": "ecr:SetRepositoryPolicy"}],
    }
    with pytest.raises(admin2.exceptions.InvalidParameterException) as e:
        admin2.set_repository_policy(repositoryName="locked", policyText=json.dumps(deny_me))
    assert "force" in str(e.value)
    admin2.set_repository_policy(repositoryName="locked", policyText=json.dumps(deny_me), force=True)
    with pytest.raises(admin2.exceptions.ClientError) as e:
        admin2.set_repository_policy(repositoryName="locked", policyText=json.dumps(deny_me), force=True)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"


def test_catalog_and_blobs_follow_repository_access(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="visible")
    ecr.create_repository(repositoryName="hidden")
    _, _, visible_layer = push_image(berth, "visible", "v1", 1)
    _, _, hidden_layer = push_image(berth, "hidden", "v1", 2)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Effect": "Allow", "Action": ["ecr:DescribeRepositories", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
             "Resource": f"{REPO_ARN}/visible"},
        ],
    }
    key, secret = berth.create_user("narrow", policy=policy)
    s = v2(berth, key, secret)
    assert s.get(f"{berth.endpoint}/v2/_catalog").json()["repositories"] == ["visible"]
    narrow = berth.client(key=key, secret=secret)
    assert [r["repositoryName"] for r in narrow.describe_repositories()["repositories"]] == ["visible"]
    with pytest.raises(narrow.exceptions.ClientError):
        narrow.describe_repositories(repositoryNames=["hidden"])
    root_catalog = v2(berth, KEY_ID, SECRET).get(f"{berth.endpoint}/v2/_catalog")
    assert root_catalog.json()["repositories"] == ["hidden", "visible"]

    # The digest of a blob in a repository the user may read does not open another one.
    assert s.get(f"{berth.endpoint}/v2/visible/blobs/{visible_layer}").status_code == 200
    r = s.get(f"{berth.endpoint}/v2/hidden/blobs/{hidden_layer}")
    assert r.status_code == 403 and error_code(r) == "DENIED"
    r = s.get(f"{berth.endpoint}/v2/hidden/blobs/{visible_layer}")
    assert r.status_code == 403


def test_registry_policy_and_its_scope(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="keep")
    no_delete = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "NoDeletes", "Effect": "Deny", "Principal": "*", "Action": "ecr:DeleteRepository",
                       "Resource": f"{REPO_ARN}/*"}],
    }
    out = json.loads(berth.aws("ecr", "put-registry-policy", "--policy-text", json.dumps(no_delete)).stdout)
    assert out["registryId"] == ACCOUNT_ID
    assert json.loads(ecr.get_registry_policy()["policyText"]) == no_delete
    # V2 (the default): the registry policy applies to every action, even to the root.
    with pytest.raises(ecr.exceptions.ClientError) as e:
        ecr.delete_repository(repositoryName="keep")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "explicit deny in a resource-based policy" in e.value.response["Error"]["Message"]
    # V1: only replication, pull-through and CreateRepository.
    ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V1")
    ecr.delete_repository(repositoryName="keep")
    ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V2")
    assert json.loads(ecr.delete_registry_policy()["policyText"]) == no_delete
    with pytest.raises(ecr.exceptions.RegistryPolicyNotFoundException):
        ecr.get_registry_policy()
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.put_registry_policy(policyText="not json")


def test_malformed_identity_policy_is_refused_by_admin(berth):
    berth.admin("create-user", "carol")
    p = subprocess.run(
        [berth_bin(), "admin", "put-user-policy", "carol", "bad", "-",
         "--data-dir", berth.data_dir + "/data"],
        capture_output=True, text=True, input='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*"}]}',
        env=dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT_ID, **berth.command_env),
    )
    assert p.returncode != 0
    assert "MalformedPolicyDocument" in p.stderr and "Resource" in p.stderr
    assert berth.admin("show-user", "carol")["PolicyNames"] == []


def test_tag_condition_keys(berth):
    """aws:RequestTag/* carries the tags a request sets; aws:TagKeys the keys it sets or removes
    (UntagResource sets no RequestTag)."""
    ecr = berth.client()
    arn = ecr.create_repository(repositoryName="tagged", tags=[{"Key": "env", "Value": "dev"}])["repository"]["repositoryArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecr:TagResource", "ecr:UntagResource"], "Resource": "*",
             "Condition": {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["owner"]}}},
            {"Sid": "NoProdTag", "Effect": "Deny", "Action": "ecr:TagResource", "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestTag/env": "prod"}}},
            {"Sid": "NoRequestTagOnUntag", "Effect": "Deny", "Action": "ecr:UntagResource", "Resource": "*",
             "Condition": {"Null": {"aws:RequestTag/env": "false"}}},
        ],
    }
    key, secret = berth.create_user("tagger", policy=policy)
    tagger = berth.client(key=key, secret=secret)
    tagger.tag_resource(resourceArn=arn, tags=[{"Key": "env", "Value": "test"}])
    with pytest.raises(tagger.exceptions.ClientError) as e:
        tagger.tag_resource(resourceArn=arn, tags=[{"Key": "env", "Value": "prod"}])
    assert "explicit deny" in e.value.response["Error"]["Message"]
    with pytest.raises(tagger.exceptions.ClientError):
        tagger.tag_resource(resourceArn=arn, tags=[{"Key": "owner", "Value": "me"}])
    with pytest.raises(tagger.exceptions.ClientError):
        tagger.untag_resource(resourceArn=arn, tagKeys=["owner"])
    tagger.untag_resource(resourceArn=arn, tagKeys=["env"])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == []


OTHER_ACCOUNT = "987654321098"
# The cross-account policy of the product's seed document, verbatim.
SEED_CROSS_ACCOUNT_POLICY = '{"Version": "2008-10-17","Statement": [{"Sid": "CrossAccountPull","Effect": "Allow","Principal": {"AWS": "arn:aws:iam::987654321098:root"},"Action": ["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}'


def test_cross_account_pull_after_the_repository_policy_grants_it(berth, docker, tmp_path):
    ecr = berth.client()
    ecr.create_repository(repositoryName="shared/app")
    ref = f"{berth.host}/shared/app:v1"
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as t:
        f = tmp_path / "hello.txt"
        f.write_text("shared across accounts\n")
        t.add(f, arcname="hello.txt")
    docker.run("import", str(rootfs), ref)
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=berth.token())
    docker.run("push", ref)
    docker.run("rmi", ref)

    # Another account, with its root key; its root gets a token on its own account's terms.
    other = berth.admin("create-account", OTHER_ACCOUNT)
    assert other["Arn"] == f"arn:aws:iam::{OTHER_ACCOUNT}:root"
    other_key, other_secret = other["AccessKey"]["AccessKeyId"], other["AccessKey"]["SecretAccessKey"]
    docker.run("logout", berth.host)
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=berth.token(other_key, other_secret))

    # Before the repository policy: the other account may not pull (nor see the repository).
    out = docker.run("pull", ref, check=False)
    assert out.returncode != 0 and "denied" in out.stderr, out.stderr
    assert "987654321098:root is not authorized to perform: ecr:BatchGetImage" in out.stderr, out.stderr
    other_ecr = berth.client(key=other_key, secret=other_secret)
    assert other_ecr.describe_repositories()["repositories"] == []

    # The seed's policy, set with the AWS CLI: now the pull works, and a push still does not.
    berth.aws("ecr", "set-repository-policy", "--repository-name", "shared/app", "--policy-text", SEED_CROSS_ACCOUNT_POLICY)
    docker.run("pull", ref)
    docker.run("tag", ref, f"{berth.host}/shared/app:v2")
    out = docker.run("push", f"{berth.host}/shared/app:v2", check=False)
    assert out.returncode != 0 and "denied" in (out.stdout + out.stderr)

    # A user of the other account: the repository policy names the account, so the user's own
    # identity policy must allow as well (both sides, across accounts).
    def other_user(name, policy):
        berth.admin("create-user", name, "--account-id", OTHER_ACCOUNT)
        berth.admin("put-user-policy", name, "inline", "-", "--account-id", OTHER_ACCOUNT, stdin=json.dumps(policy))
        key = berth.admin("create-access-key", name, "--account-id", OTHER_ACCOUNT)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    token_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]}
    puller = {
        "Version": "2012-10-17",
        "Statement": token_only["Statement"] + [{
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/shared/*",
        }],
    }
    for name, policy, allowed in (("eve", token_only, False), ("bob", puller, True)):
        key, secret = other_user(name, policy)
        docker.run("logout", berth.host)
        docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=berth.token(key, secret))
        docker.run("rmi", "-f", ref, check=False)
        out = docker.run("pull", ref, check=False)
        assert (out.returncode == 0) == allowed, f"{name}: {out.stderr}"
        if not allowed:
            assert f"arn:aws:iam::{OTHER_ACCOUNT}:user/{name} is not authorized" in out.stderr, out.stderr


def push_to(berth, host, token, repo, tag, seed):
    """Pushes a small OCI image over /v2/ addressing the registry as `host` (the Host header);
    returns the manifest digest and the responses' Location headers."""
    import hashlib

    s = requests.Session()
    s.auth = ("AWS", token)
    s.headers["Host"] = host
    locations = []

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = s.post(f"{berth.endpoint}/v2/{repo}/blobs/uploads/?digest={digest}", data=data)
        assert r.status_code == 201, r.text
        locations.append(r.headers["Location"])
        return {"digest": digest, "size": len(data)}

    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode())
    layer = blob(os.urandom(64))
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **config),
        "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **layer)],
    })
    r = s.put(f"{berth.endpoint}/v2/{repo}/manifests/{tag}", data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    locations.append(r.headers["Location"])
    return r.headers["Docker-Content-Digest"], locations


def signed_ecr(berth, key, secret, op, body):
    """An ECR API call with a body botocore would not send (fields its model lacks), signed with SigV4."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="POST", url=berth.endpoint + "/", data=json.dumps(body), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{op}",
    })
    SigV4Auth(Credentials(key, secret), "ecr", REGION).add_auth(req)
    return requests.post(req.url, data=req.body, headers=dict(req.headers))


def v2_get(berth, host, token, path):
    return requests.get(f"{berth.endpoint}{path}", auth=("AWS", token), headers={
        "Host": host, "Accept": "application/vnd.oci.image.manifest.v1+json"})


def test_each_account_has_a_registry_of_its_own(berth):
    other = berth.admin("create-account", OTHER_ACCOUNT)["AccessKey"]
    b_key, b_secret = other["AccessKeyId"], other["SecretAccessKey"]
    a, b = berth.client(), berth.client(key=b_key, secret=b_secret)
    b_host = f"{OTHER_ACCOUNT}.{berth.host}"

    # The same name in both accounts; each call acts on the caller's own registry.
    a.create_repository(repositoryName="app")
    repo = b.create_repository(repositoryName="app")["repository"]
    assert repo["registryId"] == OTHER_ACCOUNT
    assert repo["repositoryArn"] == f"arn:aws:ecr:{REGION}:{OTHER_ACCOUNT}:repository/app"
    assert repo["repositoryUri"] == f"{b_host}/app"
    b.create_repository(repositoryName="b-only")
    assert sorted(r["repositoryName"] for r in b.describe_repositories()["repositories"]) == ["app", "b-only"]
    assert [r["repositoryName"] for r in a.describe_repositories()["repositories"]] == ["app"]
    assert b.describe_repositories(maxResults=1)["repositories"][0]["repositoryName"] == "app"
    with pytest.raises(a.exceptions.InvalidParameterException):
        a.describe_repositories(registryId="555555555555")
    # Creation templates are per account: B's covers B's repositories, A sees none of B's.
    b.create_repository_creation_template(prefix="auto", appliedFor=["CREATE_ON_PUSH"],
                                          imageTagMutability="IMMUTABLE")
    a.create_repository_creation_template(prefix="ROOT", appliedFor=["CREATE_ON_PUSH"])
    assert [t["prefix"] for t in b.describe_repository_creation_templates()["repositoryCreationTemplates"]] == ["auto"]
    assert [t["prefix"] for t in a.describe_repository_creation_templates()["repositoryCreationTemplates"]] == ["ROOT"]
    with pytest.raises(b.exceptions.TemplateNotFoundException):
        b.delete_repository_creation_template(prefix="ROOT")
    # Only Berth makes repository keys: a name shaped like one is an invalid name.
    for client in (a, b):
        with pytest.raises(client.exceptions.InvalidParameterException):
            client.describe_repositories(repositoryNames=[f"@{OTHER_ACCOUNT}/app"])

    # /v2/ on `<account>.<host>` is that account's registry; no repository key ever shows.
    b_token, a_token = berth.token(b_key, b_secret), berth.token()
    digest, locations = push_to(berth, b_host, b_token, "app", "v1", 1)
    assert all(loc.startswith("/v2/app/") for loc in locations), locations
    assert v2_get(berth, b_host, b_token, "/v2/app/manifests/v1").status_code == 200
    assert v2_get(berth, berth.host, a_token, "/v2/app/manifests/v1").status_code == 404, "A's app has no v1"
    catalog = v2_get(berth, b_host, b_token, "/v2/_catalog").json()["repositories"]
    assert catalog == ["app", "b-only"]
    # A push to B's `auto/…` creates the repository in B from B's template (not from A's ROOT).
    push_to(berth, b_host, b_token, "auto/svc", "v1", 2)
    created = b.describe_repositories(repositoryNames=["auto/svc"])["repositories"][0]
    assert created["imageTagMutability"] == "IMMUTABLE" and created["registryId"] == OTHER_ACCOUNT
    with pytest.raises(a.exceptions.RepositoryNotFoundException):
        a.describe_repositories(repositoryNames=["auto/svc"])
    b.delete_repository_creation_template(prefix="auto")
    a.delete_repository_creation_template(prefix="ROOT")
    assert v2_get(berth, berth.host, a_token, "/v2/_catalog").json()["repositories"] == ["app"]
    tags = v2_get(berth, b_host, b_token, "/v2/app/tags/list").json()
    assert tags == {"name": "app", "tags": ["v1"]}
    assert [i["imageDigest"] for i in b.list_images(repositoryName="app")["imageIds"]] == [digest]
    assert a.list_images(repositoryName="app")["imageIds"] == []

    # Across accounts the other way: A's root may not pull from B's registry until B's
    # repository policy grants A's account.
    denied = v2_get(berth, b_host, a_token, "/v2/app/manifests/v1")
    assert denied.status_code == 403, denied.text
    assert f"repository/app" in denied.json()["errors"][0]["message"] and "@" not in denied.text
    with pytest.raises(a.exceptions.ClientError) as e:
        a.batch_get_image(registryId=OTHER_ACCOUNT, repositoryName="app", imageIds=[{"imageTag": "v1"}])
    assert "AccessDenied" in str(e.value)
    b.set_repository_policy(repositoryName="app", policyText=json.dumps({
        "Version": "2008-10-17",
        "Statement": [{"Sid": "PullFromA", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                       "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}],
    }))
    assert v2_get(berth, b_host, a_token, "/v2/app/manifests/v1").status_code == 200
    got = a.batch_get_image(registryId=OTHER_ACCOUNT, repositoryName="app", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageId"]["imageDigest"] == digest and got["images"][0]["registryId"] == OTHER_ACCOUNT
    url = a.get_download_url_for_layer(registryId=OTHER_ACCOUNT, repositoryName="app",
                                       layerDigest=json.loads(got["images"][0]["imageManifest"])["layers"][0]["digest"])
    assert url["downloadUrl"].startswith(f"http://{b_host}/v2/app/blobs/")
    path = url["downloadUrl"].split(b_host, 1)[1]
    assert requests.get(f"{berth.endpoint}{path}", headers={"Host": b_host}).status_code == 200
    # The signature is for B's repository: the same URL on the default registry is refused.
    assert requests.get(f"{berth.endpoint}{path}", headers={"Host": berth.host}).status_code == 401
    # A's grant on B's app says nothing about A pulling B's other repositories.
    assert v2_get(berth, b_host, a_token, "/v2/b-only/tags/list").status_code == 403

    # Tag listings page on B's host with Links that name the repository, not its key.
    push_to(berth, b_host, b_token, "app", "v2", 2)
    first = v2_get(berth, b_host, b_token, "/v2/app/tags/list?n=1")
    assert first.json()["tags"] == ["v1"] and first.headers["Link"].startswith("</v2/app/tags/list?"), first.headers

    # The default account's listings skip other accounts' repositories, page by page.
    a.create_repository(repositoryName="0first")
    a.create_repository(repositoryName="zlast")
    seen, path = [], "/v2/_catalog?n=1"
    while path:
        r = v2_get(berth, berth.host, a_token, path)
        seen += r.json()["repositories"]
        link = r.headers.get("Link")
        path = link[1:link.index(">")] if link else None
    assert seen == ["0first", "app", "zlast"]
    names, token = [], None
    while True:
        page = a.describe_repositories(maxResults=1, **({"nextToken": token} if token else {}))
        names += [r["repositoryName"] for r in page["repositories"]]
        token = page.get("nextToken")
        if not token:
            break
    assert names == ["0first", "app", "zlast"]

    # An account may not act on another's registry through a stray repository name: registry
    # operations are authorized on the registry, and names shaped like keys are invalid.
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"}, "Action": "ecr:*", "Resource": "*"}]})
    for stray, code in ((f"@{OTHER_ACCOUNT}/xx", "InvalidParameterException"), ("xx", "AccessDeniedException")):
        body = {"registryId": ACCOUNT_ID, "policyText": policy, "repositoryName": stray}
        r = signed_ecr(berth, b_key, b_secret, "PutRegistryPolicy", body)
        assert r.status_code in (400, 403) and r.json()["__type"] == code, r.text
    with pytest.raises(a.exceptions.RegistryPolicyNotFoundException):
        a.get_registry_policy()

    # IAM is per account: B's root manages B's users.
    b_iam = berth.client("iam", key=b_key, secret=b_secret)
    user = b_iam.create_user(UserName="builder")["User"]
    assert user["Arn"] == f"arn:aws:iam::{OTHER_ACCOUNT}:user/builder"
    assert "builder" not in [u["UserName"] for u in berth.client("iam").list_users()["Users"]]
