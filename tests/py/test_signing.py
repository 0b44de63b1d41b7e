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
from conftest import ACCOUNT_ID, REGION, rootfs_tar, sigstore_tool


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


def skopeo_copy(berth, d, ref, tmp_path, *extra):
    out = tmp_path / f"copy-{abs(hash((str(d), ref, extra)))}"
    return subprocess.run(
        [
            sigstore_tool("skopeo-sigstore"), "--policy", str(d / "policy.json"), "--registries.d", str(d / "registries.d"),
            "copy", *extra, "--src-tls-verify=false", "--src-creds", f"AWS:{berth.token()}", f"docker://{ref}",
            f"dir:{out}",
        ],
        capture_output=True, text=True,
    )


def verify_tag_scheme(berth, repo, digest, pem, reference, host=None, token=None):
    """What containers/image does with the exported key: some layer of the image's .sig
    manifest verifies (ECDSA P-256 SHA-256 over the payload) and claims `digest` under
    `reference`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(pem.read_bytes())
    s = v2(berth, token)
    # Another account's registry is addressed by its host name (`<account>.<host>`).
    where = {"Host": host} if host else {}
    tag = digest.replace(":", "-") + ".sig"
    m = s.get(f"{berth.endpoint}/v2/{repo}/manifests/{tag}",
              headers={"Accept": "application/vnd.oci.image.manifest.v1+json", **where})
    if m.status_code != 200:
        return False
    for layer in json.loads(m.content)["layers"]:
        payload = s.get(f"{berth.endpoint}/v2/{repo}/blobs/{layer['digest']}", headers=where).content
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        try:
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        claim = json.loads(payload)["critical"]
        if claim["image"]["docker-manifest-digest"] == digest and claim["identity"]["docker-reference"] == reference:
            return True
    return False


def v2(berth, token=None):
    s = requests.Session()
    s.auth = ("AWS", token or berth.token())
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
            assert p.returncode == 0, f"{identity} {t}: {p.stderr}"
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
    p = skopeo_copy(berth, d, f"{berth.host}/prod/app:v1", tmp_path)
    assert p.returncode != 0 and "cryptographic signature verification failed" in p.stderr, p.stderr
    assert not verify_tag_scheme(berth, "prod/app", digest, other_pem, f"{berth.host}/prod/app:v1")

    # cosign verifies the tag-scheme signatures with the same key (no transparency log).
    cosign_home = tmp_path / "cosign-home"
    (cosign_home / ".docker").mkdir(parents=True)
    auth = base64.b64encode(f"AWS:{berth.token()}".encode()).decode()
    (cosign_home / ".docker" / "config.json").write_text(json.dumps({"auths": {berth.host: {"auth": auth}}}))
    cosign_env = dict(os.environ, HOME=str(cosign_home), DOCKER_CONFIG=str(cosign_home / ".docker"))

    def cosign(*args):
        return subprocess.run([sigstore_tool("cosign"), *args], capture_output=True, text=True, env=cosign_env)

    p = cosign("verify", "--key", str(pem), "--insecure-ignore-tlog=true", "--allow-http-registry=true",
               f"{berth.host}/prod/app:v1")
    assert p.returncode == 0, p.stderr
    verified = json.loads(p.stdout)
    assert sorted(v["critical"]["identity"]["docker-reference"] for v in verified) == [
        f"{berth.host}/prod/app:stable", f"{berth.host}/prod/app:v1"]
    assert {v["critical"]["image"]["docker-manifest-digest"] for v in verified} == {digest}
    p = cosign("verify", "--key", str(other_pem), "--insecure-ignore-tlog=true", "--allow-http-registry=true",
               f"{berth.host}/prod/app:v1")
    assert p.returncode != 0

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
        # cosign verifies the bundle too (offline: an empty trusted root, no log).
        (tmp_path / "bundle.json").write_text(json.dumps(bundle))
        (tmp_path / "payload.json").write_bytes(payload)
        (tmp_path / "root.json").write_text('{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}')
        p = cosign("verify-blob", "--key", str(pem), "--bundle", str(tmp_path / "bundle.json"), "--new-bundle-format",
                   "--trusted-root", str(tmp_path / "root.json"), "--insecure-ignore-tlog=true",
                   str(tmp_path / "payload.json"))
        assert p.returncode == 0 and "Verified OK" in p.stderr + p.stdout, p.stderr

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

    # podman 5 wants its network helper present even to pull (scripts/sigstore-tools).
    podman_bin = sigstore_tool("podman-sigstore")
    conf_override = os.path.join(os.path.dirname(os.path.realpath(podman_bin)), "..", "..", "..", "containers.conf")

    def pull(ref):
        return subprocess.run(
            [podman_bin, *podman.storage, "--cgroup-manager", "cgroupfs", "--events-backend", "none",
             "pull", "--tls-verify=false", ref],
            capture_output=True, text=True, env=dict(os.environ, HOME=str(home), REGISTRY_AUTH_FILE=podman.auth, CONTAINERS_CONF_OVERRIDE=conf_override),
        )

    podman.run("rmi", "-f", f"{host}/prod/svc:v1", f"{host}/other/svc:v1")
    p = pull(f"{host}/prod/svc:v1")
    assert p.returncode == 0, p.stderr
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


def test_client_signatures_are_added_never_replaced(berth, tmp_path):
    """skopeo's own signatures (`--sign-by-sigstore-private-key`) go into the same .sig
    manifest as Berth's, in an IMMUTABLE repository too: every signature stays and verifies."""
    from conftest import push_image

    skopeo = sigstore_tool("skopeo-sigstore")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse\n")
    keys = {}
    for name in ("alice", "bob"):
        subprocess.run([skopeo, "generate-sigstore-key", "--output-prefix", str(tmp_path / name),
                        "--passphrase-file", str(passphrase)], check=True, capture_output=True)
        keys[name] = (tmp_path / f"{name}.private", tmp_path / f"{name}.pub")
    arn, berth_pem = create_profile(berth, "managed", tmp_path)
    put_config(berth, signing_rule(arn, "signed/*"))
    berth.aws("ecr", "create-repository", "--repository-name", "signed/app", "--image-tag-mutability", "IMMUTABLE")
    digest, _, _ = push_image(berth, "signed/app", "v1", seed=7)

    d = tmp_path / "client"
    (d / "registries.d").mkdir(parents=True)
    (d / "registries.d" / "berth.yaml").write_text(f'docker:\n  "{berth.host}":\n    use-sigstore-attachments: true\n')
    (d / "policy.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    ref = f"docker://{berth.host}/signed/app:v1"
    for name in ("alice", "bob"):
        p = subprocess.run(
            [skopeo, "--policy", str(d / "policy.json"), "--registries.d", str(d / "registries.d"), "copy",
             "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", f"AWS:{berth.token()}",
             "--dest-creds", f"AWS:{berth.token()}", "--sign-by-sigstore-private-key", str(keys[name][0]),
             "--sign-passphrase-file", str(passphrase), ref, ref],
            capture_output=True, text=True,
        )
        assert p.returncode == 0, p.stderr

    # Berth's signature and both clients' are in the one .sig manifest, and each verifies.
    s = v2(berth)
    sig = s.get(f"{berth.endpoint}/v2/signed/app/manifests/{digest.replace(':', '-')}.sig",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert len(json.loads(sig.content)["layers"]) == 3
    for pem in (berth_pem, keys["alice"][1], keys["bob"][1]):
        assert verify_tag_scheme(berth, "signed/app", digest, pem, f"{berth.host}/signed/app:v1"), pem
        env = skopeo_env(tmp_path, berth, f"{berth.host}/signed/app", pem, "matchRepoDigestOrExact")
        p = skopeo_copy(berth, env, f"{berth.host}/signed/app:v1", tmp_path)
        assert p.returncode == 0, p.stderr
    # Superseded .sig manifests do not linger as untagged images.
    images = berth.client().describe_images(repositoryName="signed/app")["imageDetails"]
    assert len(images) == 2 + 1, [i.get("imageTags") for i in images]  # image, .sig, bundle referrer


def test_verification_on_pull(berth, docker, tmp_path):
    """Beyond ECR: a repository that verifies signatures on pull serves a signed multi-arch image
    (its children through the signed index) and refuses an unsigned one (`denied`) to Docker
    and BatchGetImage; a client's key can be trusted too; signatures stay readable to skopeo."""
    host = berth.host
    arn, pem = create_profile(berth, "gate", tmp_path)
    berth.aws("ecr", "create-repository", "--repository-name", "verified/app")
    children = {}
    for name in ("amd", "arm", "unsigned"):
        children[name] = docker_push(berth, docker, tmp_path, "verified/app", [name], f"{name}=1\n")
    s = v2(berth)
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    entries = []
    for name, arch in (("amd", "amd64"), ("arm", "arm64")):
        body = s.get(f"{berth.endpoint}/v2/verified/app/manifests/{children[name]}", headers=accept).content
        entries.append({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": children[name],
                        "size": len(body), "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                        "manifests": entries}).encode()
    # Signed by Berth's rule, which comes after the children were pushed (they are unsigned).
    put_config(berth, signing_rule(arn, "verified/*"))
    r = s.put(f"{berth.endpoint}/v2/verified/app/manifests/multi", data=index,
              headers={"Content-Type": "application/vnd.docker.distribution.manifest.list.v2+json"})
    assert r.status_code == 201, r.text
    multi = r.headers["Docker-Content-Digest"]
    assert not verify_tag_scheme(berth, "verified/app", children["amd"], pem, f"{host}/verified/app:amd")

    berth.admin("set-pull-verification", "verified/app", "--trust-profile", "gate")
    ext = berth_api_call(berth, "GetPullVerification", {"repositoryName": "verified/app"})
    assert ext["trustedSigningProfileArns"] == [arn]

    docker.run("rmi", "-f", *[f"{host}/verified/app:{n}" for n in children])
    pulled = docker.run("pull", f"{host}/verified/app:multi")
    assert "Downloaded newer image" in pulled.stdout or "Image is up to date" in pulled.stdout
    refused = docker.run("pull", f"{host}/verified/app:unsigned", check=False)
    assert refused.returncode != 0
    assert "denied" in refused.stderr and children["unsigned"] in refused.stderr and "gate" in refused.stderr, refused.stderr

    # Naming a subject does not make a runnable image exempt.
    amd = s.get(f"{berth.endpoint}/v2/verified/app/manifests/{children['amd']}", headers=accept).json()
    disguised = dict(amd, mediaType="application/vnd.oci.image.manifest.v1+json",
                     config=dict(amd["config"], mediaType="application/vnd.oci.image.config.v1+json"),
                     layers=[dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar+gzip") for layer in amd["layers"]],
                     subject={"mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                              "digest": multi, "size": len(index)})
    r = s.put(f"{berth.endpoint}/v2/verified/app/manifests/disguised", data=json.dumps(disguised),
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    r = s.get(f"{berth.endpoint}/v2/verified/app/manifests/disguised",
              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text

    got = berth.client().batch_get_image(repositoryName="verified/app",
                                         imageIds=[{"imageTag": "multi"}, {"imageTag": "unsigned"}])
    assert [i["imageId"]["imageTag"] for i in got["images"]] == ["multi"]
    assert [(f["imageId"]["imageTag"], f["failureCode"]) for f in got["failures"]] == [("unsigned", "ImageInaccessible")]

    d = skopeo_env(tmp_path, berth, f"{host}/verified/app", pem, "matchRepoDigestOrExact")

    # A client's key, trusted beside the profile, lets its signature through.
    skopeo = sigstore_tool("skopeo-sigstore")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("pass\n")
    subprocess.run([skopeo, "generate-sigstore-key", "--output-prefix", str(tmp_path / "carol"),
                    "--passphrase-file", str(passphrase)], check=True, capture_output=True)
    ref = f"docker://{host}/verified/app:unsigned"
    # To sign it, the client must read it: verification is off meanwhile.
    berth.admin("set-pull-verification", "verified/app", "--off")
    accept_all = tmp_path / "accept.json"
    accept_all.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    p = subprocess.run(
        [skopeo, "--policy", str(accept_all), "--registries.d", str(d / "registries.d"), "copy",
         "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", f"AWS:{berth.token()}",
         "--dest-creds", f"AWS:{berth.token()}", "--sign-by-sigstore-private-key", str(tmp_path / "carol.private"),
         "--sign-passphrase-file", str(passphrase), ref, ref],
        capture_output=True, text=True,
    )
    assert p.returncode == 0, p.stderr
    berth.admin("set-pull-verification", "verified/app", "--trust-profile", "gate",
                "--trust-key-file", str(tmp_path / "carol.pub"))
    docker.run("pull", f"{host}/verified/app:unsigned")
    # skopeo still reads and verifies the signatures there (signature manifests are exempt).
    carol = skopeo_env(tmp_path, berth, f"{host}/verified/app", tmp_path / "carol.pub", "matchRepoDigestOrExact")
    p = skopeo_copy(berth, carol, f"{host}/verified/app:unsigned", tmp_path)
    assert p.returncode == 0, p.stderr

    # Deleting the index takes its signature and bundle along; a referrer with a tag of its
    # own (the disguised image) stays.
    berth.client().batch_delete_image(repositoryName="verified/app", imageIds=[{"imageDigest": multi}])
    tags = {i.get("imageTag") for i in berth.client().list_images(repositoryName="verified/app")["imageIds"]}
    assert multi.replace(":", "-") + ".sig" not in tags and "disguised" in tags
    left = s.get(f"{berth.endpoint}/v2/verified/app/referrers/{multi}").json()["manifests"]
    assert [m["artifactType"] for m in left] == ["application/vnd.oci.image.config.v1+json"]


def berth_api_call(berth, op, body):
    from conftest import berth_api

    status, out = berth_api(berth, op, body)
    assert status == 200, out
    return out


def test_signatures_travel_with_replicas_and_replicas_are_signed_by_their_own_rules(berth, tmp_path):
    import time

    from conftest import push_image, replication_config, replication_rule, wait_replicated

    other = "987654321098"
    keys = berth.admin("create-account", other)["AccessKey"]
    b_token = berth.token(keys["AccessKeyId"], keys["SecretAccessKey"])
    a, b = berth.client(), berth.client(key=keys["AccessKeyId"], secret=keys["SecretAccessKey"])
    a_arn, a_pem = create_profile(berth, "a_signer", tmp_path)
    put_config(berth, signing_rule(a_arn, "team/*"))
    b_profile = berth.admin("create-signing-profile", "b_signer", "--account-id", other)
    b_pem = tmp_path / "b.pub"
    b_pem.write_text(b_profile["PublicKeyPem"])
    b.put_signing_configuration(signingConfiguration={"rules": [signing_rule(b_profile["ProfileArn"])]})
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
        "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"], "Resource": f"arn:aws:ecr:{REGION}:{other}:repository/*"}]}
    b.put_registry_policy(policyText=json.dumps(policy))
    a.put_replication_configuration(replicationConfiguration=replication_config(
        replication_rule((REGION, other), prefixes=["team/"])))
    a.create_repository(repositoryName="team/app")
    digest, _, _ = push_image(berth, "team/app", "v1", seed=11)
    assert wait_replicated(a, "team/app", digest)[0]["status"] == "COMPLETE"

    # The .sig manifest is replicated too (its own push); at B it holds A's signature beside
    # B's own, made by B's rule when the replica arrived with its tag.
    b_host = f"{other}.{berth.host}"
    deadline = time.time() + 60
    while not verify_tag_scheme(berth, "team/app", digest, a_pem, f"{berth.host}/team/app:v1", b_host, b_token):
        assert time.time() < deadline, "A's signature did not reach B"
        time.sleep(0.3)
    status = b.describe_image_signing_status(repositoryName="team/app", imageId={"imageDigest": digest})
    assert verify_tag_scheme(berth, "team/app", digest, b_pem, f"{b_host}/team/app:v1", b_host, b_token)
    assert status["signingStatuses"] == [{"signingProfileArn": b_profile["ProfileArn"], "status": "COMPLETE"}]


def test_an_index_is_signed_its_children_are_not(berth, tmp_path):
    """skopeo copy --all pushes an index's children by digest, then the index by tag: Berth
    signs the index; the children's digest-push signatures are taken back."""
    import hashlib

    arn, pem = create_profile(berth, "idx", tmp_path)
    put_config(berth, signing_rule(arn))
    berth.aws("ecr", "create-repository", "--repository-name", "multi/app")
    s = v2(berth)
    base = f"{berth.endpoint}/v2/multi/app"

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert s.post(f"{base}/blobs/uploads/?digest={digest}", data=data).status_code == 201
        return {"digest": digest, "size": len(data)}

    oci = "application/vnd.oci.image.manifest.v1+json"
    entries = []
    for arch in ("amd64", "arm64"):
        config = blob(json.dumps({"architecture": arch, "os": "linux"}).encode())
        layer = blob(os.urandom(32))
        body = json.dumps({"schemaVersion": 2, "mediaType": oci,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}]}).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        assert s.put(f"{base}/manifests/{digest}", data=body, headers={"Content-Type": oci}).status_code == 201
        entries.append({"mediaType": oci, "digest": digest, "size": len(body), "platform": {"architecture": arch, "os": "linux"}})
    # Pushed by digest, each child is signed for now (a push by digest, no tag in its identity).
    ecr = berth.client()
    first = ecr.describe_image_signing_status(repositoryName="multi/app", imageId={"imageDigest": entries[0]["digest"]})
    assert [x["status"] for x in first["signingStatuses"]] == ["COMPLETE"]
    assert verify_tag_scheme(berth, "multi/app", entries[0]["digest"], pem, f"{berth.host}/multi/app")

    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": entries}).encode()
    r = s.put(f"{base}/manifests/v1", data=index, headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201, r.text
    index_digest = r.headers["Docker-Content-Digest"]
    status = ecr.describe_image_signing_status(repositoryName="multi/app", imageId={"imageTag": "v1"})
    assert [x["status"] for x in status["signingStatuses"]] == ["COMPLETE"]
    assert verify_tag_scheme(berth, "multi/app", index_digest, pem, f"{berth.host}/multi/app:v1")
    for e in entries:
        st = ecr.describe_image_signing_status(repositoryName="multi/app", imageId={"imageDigest": e["digest"]})
        assert st["signingStatuses"] == []
        sig = s.head(f"{base}/manifests/{e['digest'].replace(':', '-')}.sig")
        assert sig.status_code == 404
        assert s.get(f"{base}/referrers/{e['digest']}").json()["manifests"] == []
    # What is left: the two children, the index, its .sig and its bundle.
    assert len(ecr.describe_images(repositoryName="multi/app")["imageDetails"]) == 5
