"""ECR Public's public host (#18): `/v2/` under `--public-host` with its Bearer challenge and
`/token` endpoint — Docker, skopeo and podman pull logged out, pushes need an `aws ecr-public`
token, private repositories are not reachable there — the anonymous monthly allowance, and the
gallery (headless Chromium). The public host is `localhost`; the private one, on the same
listener, `127.0.0.1`."""
import base64
import hashlib
import json
import os
import subprocess
import tempfile

import pytest
import requests
from conftest import Berth, axe_check, chromium, rootfs_tar
from test_ecr_public import cli, client

PUBLIC_HOST = "localhost"


def start(d, **env):
    return Berth(d, extra_env={"BERTH_PUBLIC_HOST": PUBLIC_HOST, **env})


@pytest.fixture
def public():
    with tempfile.TemporaryDirectory() as d:
        b = start(d)
        yield b
        b.stop()


def public_addr(berth):
    """The public host with the listener's port (`localhost:<port>`)."""
    return f"{PUBLIC_HOST}:{berth.host.rsplit(':', 1)[1]}"


def alias_of(berth):
    return json.loads(cli(berth, "describe-registries").stdout)["registries"][0]["aliases"][0]["name"]


def anonymous_session(berth, scope):
    """A requests session holding the anonymous Bearer token the public host's token endpoint gives."""
    s = requests.Session()
    r = s.get(f"http://{public_addr(berth)}/token", params={"service": PUBLIC_HOST, "scope": scope})
    assert r.status_code == 200, r.text
    s.headers["Authorization"] = "Bearer " + r.json()["token"]
    return s


def push_session(berth):
    """A session pushing as the root user: the Bearer token got with `AWS:<ecr-public token>`."""
    password = cli(berth, "get-login-password").stdout.strip()
    r = requests.get(f"http://{public_addr(berth)}/token", auth=("AWS", password),
                     params={"account": "AWS", "service": PUBLIC_HOST})
    assert r.status_code == 200, r.text
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + r.json()["token"]
    return s


def push_blobs(s, base, repo, layer_bytes):
    """Pushes a one-layer OCI image of `layer_bytes` through `s`; returns the manifest's digest."""
    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = s.post(f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data)
        assert r.status_code == 201, r.text
        assert r.headers["Location"].startswith(f"/v2/{repo}/blobs/"), r.headers["Location"]
        return {"digest": digest, "size": len(data)}

    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    layer = blob(layer_bytes)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **config),
        "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **layer)],
    }).encode()
    r = s.put(f"{base}/v2/{repo}/manifests/v1", data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], layer["digest"]


def test_the_challenge_the_token_endpoint_and_what_anyone_may_do(public):
    alias = alias_of(public)
    cli(public, "create-repository", "--repository-name", "tools/app")
    base = f"http://{public_addr(public)}"
    # Without a token: the Bearer challenge naming the host's own token endpoint.
    r = requests.get(f"{base}/v2/")
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="{base}/token",service="{PUBLIC_HOST}"'
    r = requests.get(f"{base}/v2/{alias}/tools/app/manifests/v1")
    assert r.status_code == 401
    assert f'scope="repository:{alias}/tools/app:pull"' in r.headers["WWW-Authenticate"]
    # The private host keeps its Basic challenge.
    r = requests.get(f"{public.endpoint}/v2/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic "), r.headers
    # The token endpoint is the public host's alone.
    assert requests.get(f"{public.endpoint}/token").status_code == 404

    anon = anonymous_session(public, f"repository:{alias}/tools/app:pull")
    assert anon.get(f"{base}/v2/").status_code == 200
    # The anonymous catalog stays closed.
    r = anon.get(f"{base}/v2/_catalog")
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
    # Anonymous pushes are refused with a challenge asking for credentials.
    data = b"layer"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = anon.post(f"{base}/v2/{alias}/tools/app/blobs/uploads/?digest={digest}", data=data)
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"], r.text
    # Wrong credentials at the token endpoint are refused, not made anonymous; a private
    # registry token is not an ECR Public one.
    assert requests.get(f"{base}/token", auth=("AWS", "berth1.x.y")).status_code == 401
    assert requests.get(f"{base}/token", auth=("AWS", public.token())).status_code == 401
    assert requests.get(f"{base}/token", auth=("someone", "x")).status_code == 401
    r = requests.get(f"{base}/v2/", headers={"Authorization": "Bearer " + public.token()})
    assert r.status_code == 401

    # A push with the ECR Public token: Location headers name the repository as pulled.
    pusher = push_session(public)
    manifest_digest, layer_digest = push_blobs(pusher, base, f"{alias}/tools/app", os.urandom(1000))
    # Anyone pulls it: manifest, blob, tags.
    r = anon.get(f"{base}/v2/{alias}/tools/app/manifests/v1",
                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == manifest_digest
    r = anon.get(f"{base}/v2/{alias}/tools/app/blobs/{layer_digest}")
    assert r.status_code == 200 and len(r.content) == 1000
    assert anon.get(f"{base}/v2/{alias}/tools/app/tags/list").json() == {"name": f"{alias}/tools/app", "tags": ["v1"]}
    # Not found: another alias, a repository outside the alias, a private repository.
    public.aws("ecr", "create-repository", "--repository-name", "private/app")
    for name in ["nosuchalias/tools/app", f"{alias}/private/app", "private/app"]:
        r = anon.get(f"{base}/v2/{name}/manifests/v1")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN", (name, r.text)
    # The public repository is not reachable on the private host by any name.
    s = requests.Session()
    s.auth = ("AWS", public.token())
    for name in [f"{alias}/tools/app", "tools/app"]:
        assert s.get(f"{public.endpoint}/v2/{name}/manifests/v1").status_code == 404
    # Deleting through /v2/ needs ecr-public:BatchDeleteImage: a reader's token may pull, not delete.
    reader = public.create_user("reader", attach="arn:aws:iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly")
    token = cli(public, "get-login-password", key=reader[0], secret=reader[1]).stdout.strip()
    r = requests.get(f"{base}/token", auth=("AWS", token))
    as_reader = {"Authorization": "Bearer " + r.json()["token"]}
    assert requests.get(f"{base}/v2/{alias}/tools/app/tags/list", headers=as_reader).status_code == 200
    r = requests.delete(f"{base}/v2/{alias}/tools/app/manifests/{manifest_digest}", headers=as_reader)
    assert r.status_code == 403 and "ecr-public:BatchDeleteImage" in r.text, r.text
    r = pusher.delete(f"{base}/v2/{alias}/tools/app/manifests/{manifest_digest}")
    assert r.status_code == 202, r.text
    assert json.loads(cli(public, "describe-images", "--repository-name", "tools/app").stdout)["imageDetails"] == []


def test_docker_skopeo_and_podman_pull_logged_out(public, docker, podman):
    alias = alias_of(public)
    cli(public, "create-repository", "--repository-name", "web/app")
    public.aws("ecr", "create-repository", "--repository-name", "secret/app")
    host = public_addr(public)
    image = f"{host}/{alias}/web/app:v1"
    tar = os.path.join(docker.dir, "rootfs.tar")
    rootfs_tar(tar, "public image\n")
    docker.run("import", tar, image)

    # Logged out, Docker's push is refused (Docker words the 401 as Docker Hub's refusal).
    p = docker.run("push", image, check=False)
    assert p.returncode != 0 and "denied: requested access to the resource is denied" in p.stderr, p.stderr
    # Logged in with the ECR Public token, it pushes.
    password = cli(public, "get-login-password").stdout.strip()
    docker.run("login", "--username", "AWS", "--password-stdin", host, stdin=password)
    docker.run("push", image)
    docker.run("logout", host)

    # A private image, pushed to the private host.
    private_image = f"{public.host}/secret/app:v1"
    docker.run("tag", image, private_image)
    docker.run("login", "--username", "AWS", "--password-stdin", public.host, stdin=public.token())
    docker.run("push", private_image)
    docker.run("logout", public.host)

    # Logged out everywhere: the public image pulls through the public host.
    docker.run("rmi", image, private_image)
    docker.run("pull", image)
    assert docker.run("image", "inspect", image).returncode == 0
    # The private one is reachable neither there nor (logged out) on the private host.
    for name in [f"{host}/secret/app:v1", f"{host}/{alias}/secret/app:v1"]:
        p = docker.run("pull", name, check=False)
        assert p.returncode != 0 and ("not found" in p.stderr or "unknown" in p.stderr), (name, p.stderr)
    p = docker.run("pull", private_image, check=False)
    assert p.returncode != 0 and "no basic auth credentials" in p.stderr, p.stderr

    # skopeo and podman, with empty credential files.
    auth = os.path.join(podman.dir, "empty-auth.json")
    with open(auth, "w") as f:
        f.write("{}")
    env = dict(os.environ, REGISTRY_AUTH_FILE=auth)
    p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--authfile", auth, f"docker://{image}"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Name"] == f"{host}/{alias}/web/app"
    out = os.path.join(podman.dir, "copied")
    p = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--authfile", auth, f"docker://{image}",
                        f"oci:{out}:v1"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--authfile", auth,
                        f"docker://{host}/{alias}/secret/app:v1"], capture_output=True, text=True, env=env)
    assert p.returncode != 0
    podman.auth = auth
    podman.run("pull", "--tls-verify=false", image)
    assert image in podman.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    p = podman.run("push", "--tls-verify=false", image, f"{host}/{alias}/web/app:v2", check=False)
    assert p.returncode != 0, p.stderr


def test_anonymous_pulls_have_a_monthly_allowance(tmp_path):
    b = start(str(tmp_path), BERTH_PUBLIC_ANONYMOUS_BYTES_PER_MONTH="50000")
    try:
        alias = alias_of(b)
        cli(b, "create-repository", "--repository-name", "big")
        base = f"http://{public_addr(b)}"
        _, layer = push_blobs(push_session(b), base, f"{alias}/big", os.urandom(30_000))
        anon = anonymous_session(b, f"repository:{alias}/big:pull")
        url = f"{base}/v2/{alias}/big/blobs/{layer}"
        assert anon.get(url).status_code == 200
        # The count is written behind the request: the third pull at the latest is over.
        import time
        statuses = []
        for _ in range(20):
            r = anon.get(url)
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
            time.sleep(0.2)
        assert statuses[-1] == 429, statuses
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS", r.text
        assert 0 < int(r.headers["Retry-After"]) <= 31 * 86400
        # Signed-in pulls do not draw on it; neither does the private host.
        assert push_session(b).get(url).status_code == 200
        # Counted in the metadata store: a restart does not forget it.
        if b.cluster is None:
            data = str(tmp_path)
            b.stop()
            b = start(data, BERTH_PUBLIC_ANONYMOUS_BYTES_PER_MONTH="50000")
            base = f"http://{public_addr(b)}"
            anon = anonymous_session(b, f"repository:{alias}/big:pull")
            assert anon.get(f"{base}/v2/{alias}/big/blobs/{layer}").status_code == 429
    finally:
        b.stop()


def test_the_gallery_lists_public_repositories_with_their_catalog_data(public):
    alias = alias_of(public)
    # A 1x1 PNG; boto3 sends a blob base64-encoded, as the model says.
    logo = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
    cli(public, "put-registry-catalog-data", "--display-name", "Team Gallery")
    client(public).create_repository(repositoryName="gallery/web", catalogData={
        "description": "A web server for the gallery test",
        "architectures": ["x86-64"], "operatingSystems": ["Linux"], "logoImageBlob": logo,
        "aboutText": "# About web\n\nServes **pages**. <script>window.pwned = 1</script>\n\n[bad](javascript:window.pwned=2)",
        "usageText": "Run `docker run web`.",
    })
    cli(public, "create-repository", "--repository-name", "gallery/other", "--catalog-data",
        json.dumps({"description": "Something else"}))
    base = f"http://{public_addr(public)}"
    # Only on the public host.
    assert requests.get(f"{public.endpoint}/gallery/").status_code == 404
    r = requests.get(f"{base}/gallery/-/logo/{alias}/gallery/web")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium("gallery", public.cluster) as (browser, shot):
        browser.get(f"{base}/gallery/")
        names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "li.repository h2 a")]
        assert names == [f"{alias}/gallery/other", f"{alias}/gallery/web"], names
        assert "A web server for the gallery test" in browser.page_source
        # Search.
        box = browser.find_element(By.ID, "q")
        box.send_keys("web server")
        box.submit()
        WebDriverWait(browser, 10).until(lambda b: "q=web" in b.current_url)
        names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "li.repository h2 a")]
        assert names == [f"{alias}/gallery/web"], names
        shot("search")
        axe_check(browser, "gallery search")
        # The repository's page: catalog data, Markdown rendered, no script run.
        browser.find_element(By.LINK_TEXT, f"{alias}/gallery/web").click()
        WebDriverWait(browser, 10).until(lambda b: b.current_url.endswith("/gallery/web"))
        assert browser.find_element(By.CSS_SELECTOR, "h1").text == f"{alias}/gallery/web"
        assert browser.find_element(By.CSS_SELECTOR, "section.markdown h4").text == "About web"
        assert browser.find_element(By.CSS_SELECTOR, "section.markdown strong").text == "pages"
        assert "Published by Team Gallery" in browser.page_source
        assert "x86-64" in browser.page_source and "Linux" in browser.page_source
        assert browser.execute_script("return window.pwned === undefined")
        bad = browser.find_element(By.LINK_TEXT, "bad")
        assert "javascript" not in (bad.get_attribute("href") or "")
        assert f"docker pull {public_addr(public)}/{alias}/gallery/web:latest" in browser.page_source
        assert browser.execute_script("return document.querySelector('img.logo').naturalWidth") == 1
        shot("repository")
        axe_check(browser, "gallery repository")
        browser.get(f"{base}/gallery/?q=nothing-like-this")
        assert "No public repository matches" in browser.page_source
