"""Image signing (#18): signing profiles held by Berth (`berth admin create-signing-profile`),
ECR's signing configuration API, signing within a Docker push, and the two forms a signature
takes — verified by skopeo and podman with a `sigstoreSigned` policy and the exported key
(sigstore attachments in the tag scheme), and the sigstore bundle referrer, verified here with
`cryptography`."""
import base64
import hashlib
import json
import os
import subprocess

import pytest
import requests
from conftest import ACCOUNT_ID, REGION, rootfs_tar


def create_profile(berth, name, tmp_path):
    out = berth.admin("create-signing-profile", name)
    assert out["ProfileArn"] == f"arn:aws:signer:{REGION}:{ACCOUNT_ID}:/signing-profiles/{name}"
    pem = tmp_path / f"{name}.pub"
    exported = berth.admin("get-signing-profile-public-key", name, "--output", str(pem))
    assert pem.read_text() == exported["PublicKeyPem"] == out["PublicKeyPem"]
    assert pem.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    return out["ProfileArn"], pem


def signing_rule(arn, *filters):
    rule = {"signingProfileArn": arn}
    if filters:
        rule["repositoryFilters"] = [{"filter": f, "filterType": "WILDCARD_MATCH"} for f in filters]
    return rule


def put_config(berth, *rules):
    conf = json.dumps({"rules": list(rules)})
    return json.loads(berth.aws("ecr", "put-signing-configuration", "--signing-configuration", conf).stdout)


def docker_push(berth, docker, tmp_path, repo, tags, content):
    tar = tmp_path / f"{repo.replace('/', '_')}.tar"
    rootfs_tar(tar, content)
    first = f"{berth.host}/{repo}:{tags[0]}"
    docker.run("import", str(tar), first)
    for t in tags[1:]:
        docker.run("tag", first, f"{berth.host}/{repo}:{t}")
    password = berth.aws("ecr", "get-login-password").stdout
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=password)
    for t in tags:
        docker.run("push", f"{berth.host}/{repo}:{t}")
    detail = berth.client().describe_images(repositoryName=repo, imageIds=[{"imageTag": tags[0]}])["imageDetails"][0]
    return detail["imageDigest"]


def skopeo_env(tmp_path, berth, scope, pem, identity):
    """A policy.json requiring a sigstore signature by `pem` for `scope` (rejecting all else) and
    a registries.d turning on sigstore attachments for the registry, as skopeo documents."""
    d = tmp_path / f"skopeo-{identity}"
    (d / "registries.d").mkdir(parents=True, exist_ok=True)
    (d / "registries.d" / "berth.yaml").write_text(f'docker:\n  "{berth.host}":\n    use-sigstore-attachments: true\n')
    policy = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {scope: [{"type": "sigstoreSigned", "keyPath": str(pem), "signedIdentity": {"type": identity}}]},
            "dir": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }
    (d / "policy.json").write_text(json.dumps(policy))
    return d


def skopeo_copy(berth, d, ref, tmp_path):
    out = tmp_path / f"copy-{abs(hash((str(d), ref)))}"
    return subprocess.run(
        [
            "skopeo", "--policy", str(d / "policy.json"), "--registries.d", str(d / "registries.d"),
            "copy", "--src-tls-verify=false", "--src-creds", f"AWS:{berth.token()}", f"docker://{ref}", f"dir:{out}",
        ],
        capture_output=True, text=True,
    )


# Debian 12's skopeo and podman are built with sigstore verification patched out: they fetch
# and parse every sigstore attachment of the image (what this checks of Berth's form), then
# refuse each signature with this reason instead of checking its key. A build with sigstore
# must verify the signatures outright.
SIGSTORE_DISABLED = "Debian-local change: sigstore disabled"


def assert_verified(p, signatures):
    """`p` (a skopeo or podman pull under a sigstoreSigned policy) accepted the image, or, with
    sigstore patched out, found exactly `signatures` signatures to judge."""
    if p.returncode == 0:
        return
    assert SIGSTORE_DISABLED in p.stderr, p.stderr
    assert p.stderr.count(SIGSTORE_DISABLED) == signatures, p.stderr


def verify_tag_scheme(berth, repo, digest, pem, reference):
    """What containers/image does with the exported key: some layer of the image's .sig
    manifest verifies (ECDSA P-256 SHA-256 over the payload) and claims `digest` under
    `reference`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(pem.read_bytes())
    s = v2(berth)
    tag = digest.replace(":", "-") + ".sig"
    m = s.get(f"{berth.endpoint}/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    if m.status_code != 200:
        return False
    for layer in json.loads(m.content)["layers"]:
        payload = s.get(f"{berth.endpoint}/v2/{repo}/blobs/{layer['digest']}").content
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        try:
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        claim = json.loads(payload)["critical"]
        if claim["image"]["docker-manifest-digest"] == digest and claim["identity"]["docker-reference"] == reference:
            return True
    return False


def v2(berth):
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    return s


def test_configuration_api_and_its_errors(berth, tmp_path):
    arn, _ = create_profile(berth, "release", tmp_path)
    ecr = berth.client()
    with pytest.raises(ecr.exceptions.SigningConfigurationNotFoundException):
        ecr.get_signing_configuration()
    err = berth.aws("ecr", "delete-signing-configuration", check=False)
    assert err.returncode != 0 and "SigningConfigurationNotFoundException" in err.stderr

    put = put_config(berth, signing_rule(arn, "prod/*"), signing_rule(arn))
    assert put["signingConfiguration"]["rules"][0]["repositoryFilters"][0]["filter"] == "prod/*"
    got = json.loads(berth.aws("ecr", "get-signing-configuration").stdout)
    assert got["registryId"] == ACCOUNT_ID and got["signingConfiguration"] == put["signingConfiguration"]

    # A profile that does not exist, or of another account, is named in the refusal.
    for bad in [
        f"arn:aws:signer:{REGION}:{ACCOUNT_ID}:/signing-profiles/missing",
        f"arn:aws:signer:{REGION}:999999999999:/signing-profiles/release",
    ]:
        conf = json.dumps({"rules": [signing_rule(bad)]})
        p = berth.aws("ecr", "put-signing-configuration", "--signing-configuration", conf, check=False)
        assert p.returncode != 0 and "InvalidParameterException" in p.stderr and bad in p.stderr, p.stderr
    for rules in ([signing_rule(arn)] * 11, [signing_rule(arn, "Bad*")]):
        with pytest.raises(ecr.exceptions.ClientError) as e:
            ecr.put_signing_configuration(signingConfiguration={"rules": rules})
        assert e.value.response["Error"]["Code"] in ("InvalidParameterException", "ValidationException")

    deleted = json.loads(berth.aws("ecr", "delete-signing-configuration").stdout)
    assert deleted["signingConfiguration"] == put["signingConfiguration"]
    with pytest.raises(ecr.exceptions.SigningConfigurationNotFoundException):
        ecr.get_signing_configuration()

    # A revoked profile cannot be configured.
    berth.admin("revoke-signing-profile", "release")
    conf = json.dumps({"rules": [signing_rule(arn)]})
    p = berth.aws("ecr", "put-signing-configuration", "--signing-configuration", conf, check=False)
    assert p.returncode != 0 and "revoked" in p.stderr
    listed = berth.admin("list-signing-profiles")["Profiles"]
    assert [(p["ProfileName"], p["Status"]) for p in listed] == [("release", "Revoked")]


def test_managed_signing_verified_by_skopeo(berth, docker, tmp_path):
    arn, pem = create_profile(berth, "prod_signer", tmp_path)
    put_config(berth, signing_rule(arn, "prod/*"))
    berth.aws("ecr", "create-repository", "--repository-name", "prod/app", "--image-tag-mutability", "IMMUTABLE")
    berth.aws("ecr", "create-repository", "--repository-name", "dev/app")
    digest = docker_push(berth, docker, tmp_path, "prod/app", ["v1", "stable"], "prod=1\n")
    other = docker_push(berth, docker, tmp_path, "dev/app", ["v1"], "dev=1\n")

    # Signed within the push: COMPLETE once the push is acknowledged, one status per profile.
    status = berth.client().describe_image_signing_status(repositoryName="prod/app", imageId={"imageTag": "v1"})
    assert status["imageId"] == {"imageTag": "v1", "imageDigest": digest}
    assert status["signingStatuses"] == [{"signingProfileArn": arn, "status": "COMPLETE"}]
    out = json.loads(berth.aws(
        "ecr", "describe-image-signing-status", "--repository-name", "dev/app", "--image-id", "imageTag=v1").stdout)
    assert out["signingStatuses"] == []

    # The .sig manifest holds exactly one signature per pushed tag.
    s = v2(berth)
    tag = digest.replace(":", "-") + ".sig"
    r = s.get(f"{berth.endpoint}/v2/prod/app/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text
    layers = json.loads(r.content)["layers"]
    refs = []
    for layer in layers:
        assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        payload = json.loads(s.get(f"{berth.endpoint}/v2/prod/app/blobs/{layer['digest']}").content)
        assert payload["critical"]["image"]["docker-manifest-digest"] == digest
        refs.append(payload["critical"]["identity"]["docker-reference"])
    assert sorted(refs) == [f"{berth.host}/prod/app:stable", f"{berth.host}/prod/app:v1"]
    # The signature tag is no image of its own for ECR's listings of the subject's signatures.
    assert berth.client().list_images(repositoryName="dev/app", filter={"tagStatus": "TAGGED"})["imageIds"] == [
        {"imageDigest": other, "imageTag": "v1"}
    ]

    # skopeo verifies with the exported key: the default identity rule and matchRepository.
    for identity in ("matchRepoDigestOrExact", "matchRepository"):
        d = skopeo_env(tmp_path, berth, f"{berth.host}/prod/app", pem, identity)
        for t in ("v1", "stable"):
            p = skopeo_copy(berth, d, f"{berth.host}/prod/app:{t}", tmp_path)
            assert_verified(p, signatures=2)
    for t in ("v1", "stable"):
        assert verify_tag_scheme(berth, "prod/app", digest, pem, f"{berth.host}/prod/app:{t}")
    assert not verify_tag_scheme(berth, "prod/app", digest, pem, f"{berth.host}/prod/app:latest")
    # An image of an unmatched repository has no signature: refused.
    d = skopeo_env(tmp_path, berth, f"{berth.host}/dev/app", pem, "matchRepoDigestOrExact")
    p = skopeo_copy(berth, d, f"{berth.host}/dev/app:v1", tmp_path)
    assert p.returncode != 0 and "no signature exists" in p.stderr, p.stderr
    # Another key does not verify Berth's signature.
    _, other_pem = create_profile(berth, "someone_else", tmp_path)
    d = skopeo_env(tmp_path, berth, f"{berth.host}/prod/app", other_pem, "matchRepoDigestOrExact")
    assert skopeo_copy(berth, d, f"{berth.host}/prod/app:v1", tmp_path).returncode != 0
    assert not verify_tag_scheme(berth, "prod/app", digest, other_pem, f"{berth.host}/prod/app:v1")

    # The same signature as a sigstore bundle referrer, verified with the exported key.
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(pem.read_bytes())
    referrers = s.get(f"{berth.endpoint}/v2/prod/app/referrers/{digest}").json()["manifests"]
    bundles = [m for m in referrers if m.get("artifactType") == "application/vnd.dev.sigstore.bundle.v0.3+json"]
    assert len(bundles) == 2
    for desc in bundles:
        m = json.loads(s.get(f"{berth.endpoint}/v2/prod/app/manifests/{desc['digest']}",
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content)
        assert m["subject"]["digest"] == digest
        bundle = json.loads(s.get(f"{berth.endpoint}/v2/prod/app/blobs/{m['layers'][0]['digest']}").content)
        payload = s.get(f"{berth.endpoint}/v2/prod/app/blobs/{m['layers'][1]['digest']}").content
        assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        assert bundle["verificationMaterial"]["publicKey"]["hint"] == arn
        ms = bundle["messageSignature"]
        assert base64.b64decode(ms["messageDigest"]["digest"]) == hashlib.sha256(payload).digest()
        key.verify(base64.b64decode(ms["signature"]), payload, ec.ECDSA(hashes.SHA256()))

    # Lifecycle neither counts nor expires the signature on its own: a rule keeping one tagged
    # image of any tag keeps both prod/app tags' image and its signature tag.
    ecr = berth.client()
    ids = ecr.list_images(repositoryName="prod/app")["imageIds"]
    sig_tag = digest.replace(":", "-") + ".sig"
    assert any(i.get("imageTag") == sig_tag for i in ids)
    policy = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                                          "countNumber": 1}, "action": {"type": "expire"}}]}
    ecr.put_lifecycle_policy(repositoryName="prod/app", lifecyclePolicyText=json.dumps(policy))
    preview = ecr.start_lifecycle_policy_preview(repositoryName="prod/app")
    for _ in range(100):
        preview = ecr.get_lifecycle_policy_preview(repositoryName="prod/app")
        if preview["status"] != "IN_PROGRESS":
            break
    assert preview["status"] == "COMPLETE" and preview["previewResults"] == [], preview

    # Deleting the image takes its .sig manifest and its referrers along.
    ecr.batch_delete_image(repositoryName="prod/app", imageIds=[{"imageDigest": digest}])
    assert ecr.list_images(repositoryName="prod/app")["imageIds"] == []
    assert s.get(f"{berth.endpoint}/v2/prod/app/referrers/{digest}").json()["manifests"] == []


def test_podman_verifies_with_a_policy_in_its_home(berth, podman, tmp_path):
    arn, pem = create_profile(berth, "pod_signer", tmp_path)
    put_config(berth, signing_rule(arn, "prod/*"))
    host = berth.host
    password = berth.aws("ecr", "get-login-password").stdout.strip()
    podman.run("login", "--tls-verify=false", "--username", "AWS", "--password-stdin", host, stdin=password)
    for repo in ("prod/svc", "other/svc"):
        berth.aws("ecr", "create-repository", "--repository-name", repo)
        podman.import_files(f"{host}/{repo}:v1", {"etc/motd": f"{repo}\n"})
        podman.run("push", "--tls-verify=false", f"{host}/{repo}:v1")

    home = tmp_path / "home"
    conf = home / ".config" / "containers"
    (conf / "registries.d").mkdir(parents=True)
    (conf / "registries.d" / "berth.yaml").write_text(f'docker:\n  "{host}":\n    use-sigstore-attachments: true\n')
    (conf / "policy.json").write_text(json.dumps({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {f"{host}/prod": [
            {"type": "sigstoreSigned", "keyPath": str(pem), "signedIdentity": {"type": "matchRepository"}}
        ], f"{host}/other": [
            {"type": "sigstoreSigned", "keyPath": str(pem)}
        ]}},
    }))

    def pull(ref):
        return subprocess.run(
            ["podman", *podman.storage, "--cgroup-manager", "cgroupfs", "--events-backend", "none",
             "pull", "--tls-verify=false", ref],
            capture_output=True, text=True, env=dict(os.environ, HOME=str(home), REGISTRY_AUTH_FILE=podman.auth),
        )

    podman.run("rmi", "-f", f"{host}/prod/svc:v1", f"{host}/other/svc:v1")
    assert_verified(pull(f"{host}/prod/svc:v1"), signatures=1)
    p = pull(f"{host}/other/svc:v1")
    assert p.returncode != 0 and "no signature exists" in p.stderr, p.stderr


def test_a_pusher_without_sign_payload_is_accepted_and_failed(berth, docker, tmp_path):
    arn, _ = create_profile(berth, "guarded", tmp_path)
    put_config(berth, signing_rule(arn))
    key, secret = berth.create_user("ci", policy={
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}],
    })
    berth.aws("ecr", "create-repository", "--repository-name", "team/app")
    token = berth.token(key=key, secret=secret)
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=token)
    tar = tmp_path / "rootfs.tar"
    rootfs_tar(tar, "ci=1\n")
    ref = f"{berth.host}/team/app:v1"
    docker.run("import", str(tar), ref)
    docker.run("push", ref)
    status = berth.client().describe_image_signing_status(repositoryName="team/app", imageId={"imageTag": "v1"})
    [s] = status["signingStatuses"]
    assert (s["signingProfileArn"], s["status"], s["failureCode"]) == (arn, "FAILED", "SIGNING_NOT_AUTHORIZED")
    assert "signer:SignPayload" in s["failureReason"]

    # Allowed signer:SignPayload on the profile, the same user's push is signed.
    berth.client("iam").put_user_policy(UserName="ci", PolicyName="signer", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "signer:SignPayload", "Resource": arn}],
    }))
    rootfs_tar(tar, "ci=2\n")
    docker.run("import", str(tar), f"{berth.host}/team/app:v2")
    docker.run("push", f"{berth.host}/team/app:v2")
    status = berth.client().describe_image_signing_status(repositoryName="team/app", imageId={"imageTag": "v2"})
    assert [s["status"] for s in status["signingStatuses"]] == ["COMPLETE"], status
    # A /v2/ DELETE by digest takes the signature along too.
    signed = status["imageId"]["imageDigest"]
    sig_tag = signed.replace(":", "-") + ".sig"
    session = v2(berth)
    assert session.head(f"{berth.endpoint}/v2/team/app/manifests/{sig_tag}").status_code == 200
    assert session.delete(f"{berth.endpoint}/v2/team/app/manifests/{signed}").status_code == 202
    assert session.head(f"{berth.endpoint}/v2/team/app/manifests/{sig_tag}").status_code == 404
    assert session.get(f"{berth.endpoint}/v2/team/app/referrers/{signed}").json()["manifests"] == []

    # A revoked profile: the push is accepted, the status says why nothing was signed.
    berth.admin("revoke-signing-profile", "guarded")
    rootfs_tar(tar, "ci=3\n")
    docker.run("import", str(tar), f"{berth.host}/team/app:v3")
    docker.run("push", f"{berth.host}/team/app:v3")
    status = berth.client().describe_image_signing_status(repositoryName="team/app", imageId={"imageTag": "v3"})
    assert [(s["status"], s.get("failureCode")) for s in status["signingStatuses"]] == [("FAILED", "PROFILE_REVOKED")]
