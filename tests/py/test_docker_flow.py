"""The README's end-to-end flow with the real AWS CLI and the Docker engine."""
import os

from conftest import ACCOUNT_ID, rootfs_tar


def test_create_login_push_pull_and_immutable_repush(berth, docker, tmp_path):
    berth.aws(
        "ecr", "create-repository", "--repository-name", "my-app", "--image-tag-mutability", "IMMUTABLE",
        "--image-scanning-configuration", "scanOnPush=true",
    )
    ref = f"{berth.host}/my-app:v1.0"
    tar = tmp_path / "rootfs.tar"
    rootfs_tar(tar, "version=1\n")
    docker.run("import", str(tar), "local-app:v1.0")
    docker.run("tag", "local-app:v1.0", ref)

    # Without a login the push is refused.
    assert docker.run("push", ref, check=False).returncode != 0
    password = berth.aws("ecr", "get-login-password").stdout
    login = docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=password)
    assert "Login Succeeded" in login.stdout
    push = docker.run("push", ref)
    assert "digest: sha256:" in push.stdout
    docker.run("rmi", ref, "local-app:v1.0")
    pull = docker.run("pull", ref)
    assert "Downloaded newer image" in pull.stdout

    # The same image again under v1.0 is fine; other content under v1.0 is refused.
    docker.run("push", ref)
    rootfs_tar(tar, "version=2\n")
    docker.run("import", str(tar), ref)
    refused = docker.run("push", ref, check=False)
    assert refused.returncode != 0
    assert (
        "The image tag 'v1.0' already exists in the 'my-app' repository and cannot be overwritten "
        "because the repository is immutable." in refused.stderr + refused.stdout
    )
    # A push to a repository that does not exist fails as ECR's does.
    other = f"{berth.host}/not-created:v1"
    docker.run("tag", ref, other)
    missing = docker.run("push", other, check=False)
    assert missing.returncode != 0
    assert f"The repository with name 'not-created' does not exist in the registry with id '{ACCOUNT_ID}'" in (
        missing.stderr + missing.stdout
    ), missing.stderr
    if not berth.cluster:
        assert os.path.exists(os.path.join(berth.data_dir, "data", "meta.db"))
