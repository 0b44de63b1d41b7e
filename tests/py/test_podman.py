"""Podman and buildah against the real binary, logged in the way one seed recommends
(`aws ecr get-login-password | podman login`): push, pull, a manifest list built with
`podman manifest`, an image built with buildah, and the refusal of an immutable re-push.
As root, podman runs with vfs storage, cgroupfs and no events, in directories of its own."""
import json


def test_podman_and_buildah_push_pull_and_manifest_lists(berth, podman):
    host = berth.host
    berth.aws("ecr", "create-repository", "--repository-name", "pod/app")
    password = berth.aws("ecr", "get-login-password").stdout.strip()
    out = podman.run("login", "--tls-verify=false", "--username", "AWS", "--password-stdin", host, stdin=password)
    assert "Login Succeeded" in out.stdout

    # Push, remove, pull: the same image comes back.
    ref = f"{host}/pod/app:v1"
    podman.import_files(ref, {"etc/motd": "berth via podman\n"})
    image_id = podman.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    podman.run("push", "--tls-verify=false", ref)
    podman.run("rmi", "-f", ref)
    podman.run("pull", "--tls-verify=false", ref)
    assert podman.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == image_id
    images = json.loads(berth.aws("ecr", "describe-images", "--repository-name", "pod/app").stdout)["imageDetails"]
    assert [i["imageTags"] for i in images] == [["v1"]]

    # A manifest list of two platforms, built and pushed with `podman manifest`.
    arm = "localhost/pod-arm:v1"
    podman.import_files(arm, {"etc/motd": "arm64\n"})
    multi = f"{host}/pod/app:multi"
    podman.run("manifest", "create", multi)
    podman.run("manifest", "add", multi, f"containers-storage:{ref}")
    podman.run("manifest", "add", "--arch", "arm64", multi, f"containers-storage:{arm}")
    podman.run("manifest", "push", "--tls-verify=false", "--all", multi, f"docker://{multi}")
    got = json.loads(
        berth.aws("ecr", "batch-get-image", "--repository-name", "pod/app", "--image-ids", "imageTag=multi",
                  "--accepted-media-types", "application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json").stdout
    )["images"][0]
    index = json.loads(got["imageManifest"])
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    podman.run("rmi", "-f", arm)
    podman.run("pull", "--tls-verify=false", "--arch", "arm64", multi)

    # buildah builds an image from scratch and pushes it.
    ctr = podman.buildah("from", "scratch").stdout.strip()
    podman.buildah("config", "--label", "built.by=buildah", ctr)
    built = f"{host}/pod/app:built"
    podman.buildah("commit", ctr, built)
    podman.buildah("push", "--tls-verify=false", built)
    podman.run("rmi", "-f", built)
    podman.run("pull", "--tls-verify=false", built)
    labels = json.loads(podman.run("inspect", "--format", "{{json .Labels}}", built).stdout)
    assert labels["built.by"] == "buildah", labels

    # Immutable tags: moving v1 to other content is refused, as ECR refuses it; v1 stays.
    def v1_digest():
        out = berth.aws("ecr", "describe-images", "--repository-name", "pod/app", "--image-ids", "imageTag=v1").stdout
        return json.loads(out)["imageDetails"][0]["imageDigest"]

    before = v1_digest()
    berth.aws("ecr", "put-image-tag-mutability", "--repository-name", "pod/app", "--image-tag-mutability", "IMMUTABLE")
    podman.run("tag", built, ref)
    refused = podman.run("push", "--tls-verify=false", ref, check=False)
    assert refused.returncode != 0
    assert "immutable" in refused.stderr.lower() or "tag invalid" in refused.stderr.lower(), refused.stderr
    assert v1_digest() == before
