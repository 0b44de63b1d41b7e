"""Fixtures for the Python end-to-end tests: the real `berth` binary on a free loopback port,
driven with the real AWS CLI and boto3 (and a Docker engine where a test needs one)."""
import base64
import contextlib
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import time

import boto3
import pytest

ACCOUNT_ID = "123456789012"
KEY_ID = "AKIABERTHPYTESTROOT1"
SECRET = "berth-pytest-root-secret-0123456789abcdef"
REGION = "us-east-1"
ROOT = pathlib.Path(__file__).resolve().parents[2]


# The second run of this suite (scripts/test) sets BERTH_TEST_TOPOLOGY=cluster: every `Berth`
# a test starts without choosing its own stores is then three nodes on one PostgreSQL database
# (BERTH_TEST_POSTGRES) and one S3 bucket prefix (BERTH_TEST_S3), behind nginx round-robin;
# the tests talk to nginx and assert what they assert on one node.
CLUSTER = os.environ.get("BERTH_TEST_TOPOLOGY") == "cluster"


def single_node(reason):
    """Marks a test the cluster run leaves out, with the reason (it reads a node's data
    directory, restarts or kills the server, or starts its own topology)."""
    return pytest.mark.skipif(CLUSTER, reason=f"single-node by nature: {reason}")


# nginx as the documented load balancer (shared with the Rust harness).
NGINX_CONF = ROOT / "tests" / "fixtures" / "nginx.conf"


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(d, upstreams, port=None):
    """nginx (NGINX_CONF) in front of `upstreams` (host:port), its files in `d`, on `port` (a
    free one if not given); returns the process and the address it listens on, once it does."""
    import socket

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(nginx), "nginx must be installed (apt-get install nginx)"
    port = port or free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        servers = " ".join(f"server {h};" for h in upstreams)
        f.write(NGINX_CONF.read_text().replace("@DIR@", d).replace("@SERVERS@", servers).replace("@PORT@", str(port)))
    proc = subprocess.Popen([nginx, "-c", conf, "-p", d], stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


def _psql(url, sql):
    p = subprocess.run(["psql", url, "-tAc", sql], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def berth_bin():
    if os.environ.get("BERTH_BIN"):
        return os.environ["BERTH_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    path = pathlib.Path(target) / "debug" / "berth"
    assert path.exists(), f"{path} not found: run `cargo build --bin berth` first (or set BERTH_BIN)"
    return str(path)


class Cluster:
    """Three nodes on a fresh database and bucket prefix, nginx in front; `env` is what every
    `berth` command needs to work on the same stores."""

    NODES = 3

    def __init__(self, data_dir, env):
        import uuid

        admin = os.environ.get("BERTH_TEST_POSTGRES")
        s3 = os.environ.get("BERTH_TEST_S3")
        assert admin and s3, "the cluster run needs BERTH_TEST_POSTGRES and BERTH_TEST_S3 (scripts/test starts both)"
        self.admin_url = admin
        self.database = "berth_cluster_" + uuid.uuid4().hex[:12]
        _psql(admin, f"CREATE DATABASE {self.database}")
        base, query = s3.split("?", 1)
        os.makedirs(os.path.join(data_dir, "data"), exist_ok=True)
        # Node 0's data directory holds the shared keyring, where single-node tests look for it.
        keyring = os.path.join(data_dir, "data", "master.key")
        with open(keyring, "w") as f:
            f.write("1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
        os.chmod(keyring, 0o600)
        self.env = {
            "BERTH_META": admin.rsplit("/", 1)[0] + "/" + self.database,
            "BERTH_BLOBS": f"{base}/{self.database}?{query}",
            "BERTH_MASTER_KEY_FILE": keyring,
            "BERTH_TRUSTED_PROXIES": "127.0.0.1",
        }
        # Clients reach the nodes through nginx: signatures name images by its address.
        port = free_port()
        node_env = dict(self.env, BERTH_REGISTRY_HOST=f"127.0.0.1:{port}")
        self.dirs = [os.path.join(data_dir, "data")] + [os.path.join(data_dir, f"node{i}") for i in range(1, self.NODES)]
        self.procs, self.hosts = [], []
        self.log = open(os.path.join(data_dir, "berth.log"), "ab")
        for d in self.dirs:
            proc = subprocess.Popen(
                [berth_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", d],
                stdout=subprocess.PIPE, stderr=self.log, env=dict(env, **node_env),
            )
            line = proc.stdout.readline().decode()
            assert line.startswith("listening on "), f"berth did not start: {line!r}"
            self.procs.append(proc)
            self.hosts.append(line.split()[-1])
        self.nginx, self.host = start_nginx(data_dir, self.hosts, port=port)

    def stop(self):
        self.nginx.terminate()
        for proc in self.procs:
            proc.terminate()
        for proc in [self.nginx, *self.procs]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()
        _psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


class Berth:
    """One node, or (`cluster=True`, or in the cluster run unless the test picks its own stores)
    three nodes behind nginx."""

    def __init__(self, data_dir, extra_env=None, drop_env=(), cluster=None, listen="127.0.0.1:0"):
        self.data_dir = data_dir
        env = dict(os.environ)
        env.update(
            BERTH_ACCOUNT_ID=ACCOUNT_ID,
            BERTH_ROOT_ACCESS_KEY_ID=KEY_ID,
            BERTH_ROOT_SECRET_ACCESS_KEY=SECRET,
            BERTH_REGION=REGION,
        )
        env.update(extra_env or {})
        for name in drop_env:
            env.pop(name, None)
        self.region = env["BERTH_REGION"]
        # What every other `berth` command on these stores needs (the cluster's URLs).
        self.command_env = {}
        self.cluster = None
        if cluster is None:
            cluster = CLUSTER and not any(k in (extra_env or {}) for k in ("BERTH_META", "BERTH_BLOBS"))
        if cluster:
            self.cluster = Cluster(data_dir, env)
            self.command_env = self.cluster.env
            self.host = self.cluster.host
            self.endpoint = f"http://{self.host}"
            return
        self.log = open(os.path.join(data_dir, "berth.log"), "ab")
        self.proc = subprocess.Popen(
            [berth_bin(), "serve", "--listen", listen, "--data-dir", os.path.join(data_dir, "data")],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
        )
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening on "), f"berth did not start: {line!r}"
        self.host = line.split()[-1]
        self.endpoint = f"http://{self.host}"

    def client(self, service="ecr", key=KEY_ID, secret=SECRET):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def aws(self, *args, check=True, stdin=None):
        """Runs the real AWS CLI against this server; returns the CompletedProcess."""
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=self.region)
        env.pop("AWS_PROFILE", None)
        p = subprocess.run(
            ["aws", *args, "--endpoint-url", self.endpoint, "--output", "json"],
            capture_output=True,
            text=True,
            env=env,
            input=stdin,
        )
        if check:
            assert p.returncode == 0, f"aws {' '.join(args)} failed: {p.stderr}"
        return p

    def admin(self, *args, stdin=None):
        """Runs `berth admin …` on this server's data directory; returns its JSON output."""
        import json

        p = subprocess.run(
            [berth_bin(), "admin", *args, "--data-dir", os.path.join(self.data_dir, "data")],
            capture_output=True, text=True, input=stdin,
            env=dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT_ID, BERTH_REGION=self.region, **self.command_env),
        )
        assert p.returncode == 0, f"berth admin {' '.join(args)} failed: {p.stderr}"
        return json.loads(p.stdout)

    def cli(self, *args, check=True):
        """Runs another `berth` command (`vulndb import …`) on this server's data directory."""
        p = subprocess.run(
            [berth_bin(), *args, "--data-dir", os.path.join(self.data_dir, "data")],
            capture_output=True, text=True, env=dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT_ID, BERTH_REGION=self.region, **self.command_env),
        )
        if check:
            assert p.returncode == 0, f"berth {' '.join(args)} failed: {p.stderr}"
        return p

    def create_user(self, name, policy=None, attach=None):
        """A user with an inline `policy` (a dict) and/or an attached managed policy ARN;
        returns (access key id, secret)."""
        import json

        self.admin("create-user", name)
        if policy is not None:
            self.admin("put-user-policy", name, "inline", "-", stdin=json.dumps(policy))
        if attach is not None:
            self.admin("attach-user-policy", name, attach)
        key = self.admin("create-access-key", name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def token(self, key=KEY_ID, secret=SECRET):
        data = self.client(key=key, secret=secret).get_authorization_token()["authorizationData"][0]
        user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
        assert user == "AWS"
        return password

    def stop(self):
        if self.cluster:
            self.cluster.stop()
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def berth():
    with tempfile.TemporaryDirectory() as d:
        b = Berth(d)
        yield b
        b.stop()


class Docker:
    def __init__(self, d):
        self.dir = d
        self.sock = os.path.join(d, "docker.sock")
        self.log = open(os.path.join(d, "dockerd.log"), "ab")
        self.proc = subprocess.Popen(
            [
                "dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
                "--data-root", os.path.join(d, "root"), "--exec-root", os.path.join(d, "exec"),
                "--pidfile", os.path.join(d, "pid"), "-H", f"unix://{self.sock}",
            ],
            stdout=self.log,
            stderr=self.log,
        )
        for _ in range(600):
            if self.run("info", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("dockerd did not start")

    def run(self, *args, check=True, stdin=None):
        p = subprocess.run(
            ["docker", "--config", os.path.join(self.dir, "client"), "-H", f"unix://{self.sock}", *args],
            capture_output=True,
            text=True,
            input=stdin,
        )
        if check:
            assert p.returncode == 0, f"docker {' '.join(args)} failed: {p.stderr}"
        return p

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def docker():
    assert shutil.which("dockerd"), "dockerd must be installed (apt-get install docker.io)"
    d = tempfile.mkdtemp(prefix="dk", dir="/tmp")
    engine = Docker(d)
    yield engine
    engine.stop()
    shutil.rmtree(d, ignore_errors=True)


def unseal(data_dir, kind, ident, sealed):
    """Opens a value Berth sealed under its master keyring (`<data_dir>/master.key`), as the
    keyring crate does: AES-256-GCM, associated data naming the value and the key version."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if isinstance(sealed, bytes):
        sealed = sealed.decode()
    assert sealed.startswith("sealed:v"), sealed[:16]
    version, body = sealed[len("sealed:v"):].split(":", 1)
    keys = {}
    for line in open(os.path.join(data_dir, "master.key")):
        line = line.strip()
        if line and not line.startswith("#"):
            v, k = line.split(":", 1)
            keys[v] = base64.b64decode(k)
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    aad = f"berth keyring\n{kind}\n{ident}\nv{version}".encode()
    return AESGCM(keys[version]).decrypt(raw[:12], raw[12:], aad)


def replication_config(*rules):
    """A replication configuration as `PutReplicationConfiguration` takes it."""
    return {"rules": list(rules)}


def replication_rule(*destinations, prefixes=None):
    """A rule to (region, registry id) destinations, with PREFIX_MATCH filters if given."""
    r = {"destinations": [{"region": reg, "registryId": rid} for reg, rid in destinations]}
    if prefixes is not None:
        r["repositoryFilters"] = [{"filter": p, "filterType": "PREFIX_MATCH"} for p in prefixes]
    return r


def wait_replicated(client, repo, digest, want=1, timeout=60):
    """The replication statuses of an image once none is IN_PROGRESS."""
    deadline = time.time() + timeout
    while True:
        got = client.describe_image_replication_status(repositoryName=repo, imageId={"imageDigest": digest})
        statuses = got["replicationStatuses"]
        if len(statuses) >= want and all(s["status"] != "IN_PROGRESS" for s in statuses):
            return statuses
        assert time.time() < deadline, f"still replicating: {statuses}"
        time.sleep(0.2)


def berth_api(berth, op, body, key=KEY_ID, secret=SECRET, target="Berth_20261201"):
    """A raw SigV4-signed call of Berth's own target (botocore's model has no such operations),
    or of another `target` prefix; returns (HTTP status, JSON body)."""
    import json

    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = json.dumps(body)
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{target}.{op}"}
    req = AWSRequest(method="POST", url=berth.endpoint + "/", data=data, headers=headers)
    SigV4Auth(Credentials(key, secret), "ecr", berth.region).add_auth(req)
    r = requests.post(berth.endpoint + "/", data=data, headers=dict(req.headers))
    return r.status_code, r.json()


def push_image(berth, repo, tag, seed):
    """Pushes a small OCI image over /v2/ with a registry token; returns (digest, manifest, layer digest)."""
    import hashlib
    import json

    import requests

    s = requests.Session()
    s.auth = ("AWS", berth.token())
    base = berth.endpoint

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = s.post(f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data)
        assert r.status_code == 201, r.text
        return {"digest": digest, "size": len(data)}

    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode())
    layer = blob(os.urandom(64) + str(seed).encode())
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **config),
            "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **layer)],
        }
    ).encode()
    r = s.put(
        f"{base}/v2/{repo}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], manifest.decode(), layer["digest"]


class Podman:
    """Podman and buildah as root: vfs storage, cgroupfs and no events, in directories of its own."""

    def __init__(self, d):
        self.dir = d
        self.auth = os.path.join(d, "auth.json")
        self.storage = ["--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "run"), "--storage-driver", "vfs"]

    def run(self, *args, check=True, stdin=None):
        p = subprocess.run(
            ["podman", *self.storage, "--cgroup-manager", "cgroupfs", "--events-backend", "none", *args],
            capture_output=True, text=True, input=stdin, env=dict(os.environ, REGISTRY_AUTH_FILE=self.auth),
        )
        if check:
            assert p.returncode == 0, f"podman {' '.join(args)} failed: {p.stderr}"
        return p

    def buildah(self, *args, check=True):
        p = subprocess.run(
            ["buildah", *self.storage, *args],
            capture_output=True, text=True, env=dict(os.environ, REGISTRY_AUTH_FILE=self.auth),
        )
        if check:
            assert p.returncode == 0, f"buildah {' '.join(args)} failed: {p.stderr}"
        return p

    def import_files(self, reference, files):
        """Imports a one-layer image holding `files` ({path: text})."""
        tar = os.path.join(self.dir, "layer.tar")
        root = tempfile.mkdtemp(dir=self.dir)
        for path, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w") as f:
                f.write(text)
        with tarfile.open(tar, "w") as t:
            t.add(root, arcname=".")
        self.run("import", tar, reference)


@pytest.fixture
def podman():
    assert shutil.which("podman") and shutil.which("buildah"), "podman and buildah must be installed"
    d = tempfile.mkdtemp(prefix="pm", dir="/tmp")
    yield Podman(d)
    subprocess.run(["podman", "--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "run"),
                    "--storage-driver", "vfs", "system", "reset", "-f"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def rootfs_tar(path, content):
    """A one-file root filesystem tar (`etc/app.conf` holding `content`), for `docker import`."""
    import io

    with tarfile.open(path, "w") as t:
        data = content.encode()
        info = tarfile.TarInfo("etc/app.conf")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))


def sigstore_tool(name):
    """A client that verifies sigstore signatures (`skopeo-sigstore`, `podman-sigstore`,
    `cosign`), installed by scripts/sigstore-tools (Debian 12's skopeo and podman have sigstore
    patched out)."""
    tools = os.environ.get("BERTH_TOOLS_DIR") or os.path.expanduser("~/.cache/berth-tools")
    path = os.path.join(tools, "bin", name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run scripts/sigstore-tools (scripts/test does)")
    return path


@contextlib.contextmanager
def chromium(prefix, cluster=False):
    """Headless Chromium driven through chromedriver with selenium (Debian's chromium and
    chromium-driver, installed by scripts/test); yields the driver and `shot(name)`, which saves
    a PNG `<prefix>-<name>-<topology>.png` under $BERTH_TEST_OUTPUT."""
    browser_path, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser_path and driver_path, "chromium and chromium-driver must be installed (scripts/test does)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    out = os.environ.get("BERTH_TEST_OUTPUT") or tempfile.mkdtemp(prefix="berth-screens-")
    topology = "cluster" if cluster else "node"

    def shot(name):
        driver.save_screenshot(os.path.join(out, f"{prefix}-{name}-{topology}.png"))

    try:
        yield driver, shot
    finally:
        driver.quit()


def axe_check(driver, page):
    """Runs axe-core (installed from npm by scripts/test into the tools cache) inside the page
    `driver` shows and fails on any serious or critical accessibility violation."""
    tools = os.environ.get("BERTH_TOOLS_DIR") or os.path.expanduser("~/.cache/berth-tools")
    path = os.path.join(tools, "axe", "node_modules", "axe-core", "axe.min.js")
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run scripts/test (it installs axe-core from npm)")
    with open(path) as f:
        driver.execute_script(f.read())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations)).catch(e => done(String(e)));"
    )
    assert isinstance(result, list), f"axe-core failed on {page}: {result}"
    bad = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
           for v in result if v.get("impact") in ("serious", "critical")]
    assert not bad, f"accessibility violations on {page}: {bad}"
