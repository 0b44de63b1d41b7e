"""Pull-through cache rules through the real AWS CLI and boto3: every rule operation and the
errors the ECR model declares for them, the credential read from Secrets Manager as the service
(each secret error), and fills and ValidatePullThroughCacheRule authenticating for real with
three kinds of upstream: the reference registry (docker-registry) behind htpasswd Basic auth,
the reference registry behind the Bearer token flow (distribution's token auth, its tokens from
a token service written here that works as Docker Hub's does), and another Berth (a registry
token from GetAuthorizationToken)."""

import base64
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import botocore.exceptions
import pytest

from conftest import ACCOUNT_ID, CLUSTER, REGION, Berth, Cluster, berth_api, free_port, single_node
from test_docker_flow import rootfs_tar

USER, PASSWORD = "puller", "upstream-pass-1"


def error_code(e):
    return e.value.response["Error"]["Code"]


def wait_for_port(port, proc=None, log=None):
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the upstream exited: {open(log).read() if log else ''}")
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


class ReferenceRegistry:
    """distribution's registry (docker-registry) on a free loopback port, with htpasswd Basic
    auth when `auth` is set, and its access log kept."""

    def __init__(self, d, auth=True, token_service=None):
        self.dir = d
        self.port = free_port()
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": os.path.join(d, "storage")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}"},
        }
        if auth:
            htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
            with open(os.path.join(d, "htpasswd"), "w") as f:
                f.write(htpasswd.stdout)
            config["auth"] = {"htpasswd": {"realm": "upstream", "path": os.path.join(d, "htpasswd")}}
        if token_service is not None:
            # distribution's own token auth: it trusts the service's signing certificate and
            # challenges with `Bearer realm=…,service=…,scope=…` as Docker Hub does.
            config["auth"] = {"token": {
                "realm": token_service.realm, "service": token_service.service,
                "issuer": token_service.issuer, "rootcertbundle": token_service.certificate,
            }}
        path = os.path.join(d, "config.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # YAML is a superset of JSON
        self.log_path = os.path.join(d, "registry.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", path], stdout=self.log, stderr=self.log)
        wait_for_port(self.port, self.proc, self.log_path)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class LoopbackServer:
    """A small HTTP server on a free loopback port, serving `handler` from a thread until
    `stop`."""

    def _serve(self, handler):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class TokenService(LoopbackServer):
    """A token service working as Docker Hub's does (the distribution token spec): GET
    `/token?service=…&scope=repository:<name>:<actions>` with Basic credentials answers a JWT
    (ES256, its certificate in the `x5c` header) granting the scopes asked for, which the
    reference registry verifies against the certificate it is configured to trust. Anonymous
    requests are refused. Every request's path and user are kept."""

    service, issuer = "upstream-registry", "test-token-service"

    def __init__(self, d):
        import datetime
        import urllib.parse

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.certificate = os.path.join(d, "token-signing.pem")
        with open(self.certificate, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.requests = []  # (path, user or None)
        outer = self

        def b64url(data):
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        def jwt(access):
            header = {"typ": "JWT", "alg": "ES256", "x5c": [x5c]}
            t = int(time.time())
            claims = {"iss": outer.issuer, "sub": USER, "aud": outer.service, "exp": t + 300, "nbf": t - 10,
                      "iat": t, "jti": secrets.token_hex(8), "access": access}
            signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
            r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if (user, password) != (USER, PASSWORD):
                        user = None
                outer.requests.append((self.path, user))
                if user is None:
                    return self.reply(401, b'{"details":"incorrect username or password"}')
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                access = []
                for scope in query.get("scope", []):
                    kind, name, actions = scope.split(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                token = jwt(access)
                self.reply(200, json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode())

            def do_POST(self):
                # No OAuth2 form flow here: clients fall back to GET with Basic credentials.
                self.reply(404, b"{}")

        self._serve(Handler)
        self.realm = f"{self.url}/token"



class TokenRegistry(LoopbackServer):
    """A registry front that authenticates as Docker Hub does: `/v2/` answers 401 with
    `WWW-Authenticate: Bearer realm=…,service=…`, and the realm hands out a token for valid
    Basic credentials (or an anonymous one when `anonymous` is set)."""

    def __init__(self, anonymous=False):
        self.tokens = set()
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=b"{}", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                outer.requests.append(self.path)
                auth = self.headers.get("Authorization", "")
                if self.path.startswith("/token"):
                    ok = anonymous and not auth
                    if auth.startswith("Basic "):
                        ok = base64.b64decode(auth[6:]).decode() == f"{USER}:{PASSWORD}"
                    if not ok:
                        return self.reply(401, b'{"details":"incorrect username or password"}')
                    token = secrets.token_hex(16)
                    outer.tokens.add(token)
                    return self.reply(200, json.dumps({"token": token, "expires_in": 300}).encode())
                if self.path == "/v2/":
                    if auth.startswith("Bearer ") and auth[7:] in outer.tokens:
                        return self.reply(200, headers=[("Docker-Distribution-API-Version", "registry/2.0")])
                    challenge = f'Bearer realm="http://127.0.0.1:{outer.port}/token",service="token-registry"'
                    return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [("WWW-Authenticate", challenge)])
                return self.reply(404)

        self._serve(Handler)



@pytest.fixture
def upstream():
    with tempfile.TemporaryDirectory() as d:
        r = ReferenceRegistry(d)
        yield r
        r.stop()


def put_secret(berth, name, value):
    sm = berth.client("secretsmanager")
    return sm.create_secret(Name=name, SecretString=json.dumps(value) if isinstance(value, dict) else value)["ARN"]


def ecr_cli(berth, *args, check=True):
    p = berth.aws("ecr", *args, check=check)
    return json.loads(p.stdout) if check else p


def test_rule_operations_through_the_aws_cli(berth, upstream, tmp_path, monkeypatch):
    # The AWS CLI (v1) reads a parameter that starts with http:// or https:// as a URL to fetch
    # the value from, unless told not to: the upstream URL is to be sent as it is.
    config = tmp_path / "aws-config"
    config.write_text("[default]\ncli_follow_urlparam = false\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    arn = put_secret(berth, "ecr-pullthroughcache/upstream", {"username": USER, "accessToken": PASSWORD})
    created = ecr_cli(berth, "create-pull-through-cache-rule", "--ecr-repository-prefix", "upstream",
                      "--upstream-registry-url", upstream.url, "--credential-arn", arn,
                      "--upstream-repository-prefix", "mirror")
    assert created["ecrRepositoryPrefix"] == "upstream" and created["upstreamRegistryUrl"] == upstream.url
    assert created["credentialArn"] == arn and created["registryId"] == ACCOUNT_ID
    assert created["upstreamRepositoryPrefix"] == "mirror" and "createdAt" in created
    # A trailing slash names the same prefix; ROOT is a prefix of its own.
    ecr_cli(berth, "create-pull-through-cache-rule", "--ecr-repository-prefix", "ROOT",
            "--upstream-registry-url", upstream.url, "--upstream-registry", "docker-hub")

    rules = ecr_cli(berth, "describe-pull-through-cache-rules")["pullThroughCacheRules"]
    assert [r["ecrRepositoryPrefix"] for r in rules] == ["ROOT", "upstream"]
    assert rules[0]["upstreamRegistry"] == "docker-hub" and "credentialArn" not in rules[0]
    one = ecr_cli(berth, "describe-pull-through-cache-rules", "--ecr-repository-prefixes", "upstream/")
    assert [r["ecrRepositoryPrefix"] for r in one["pullThroughCacheRules"]] == ["upstream"]

    valid = ecr_cli(berth, "validate-pull-through-cache-rule", "--ecr-repository-prefix", "upstream")
    assert valid["isValid"] is True and "failure" not in valid, valid
    assert valid["upstreamRegistryUrl"] == upstream.url and valid["credentialArn"] == arn
    # The htpasswd registry refuses anonymous requests: the ROOT rule has no credential.
    anonymous = ecr_cli(berth, "validate-pull-through-cache-rule", "--ecr-repository-prefix", "ROOT")
    assert anonymous["isValid"] is False and "credentialArn" in anonymous["failure"], anonymous

    other = put_secret(berth, "ecr-pullthroughcache/other", {"username": USER, "accessToken": "wrong"})
    updated = ecr_cli(berth, "update-pull-through-cache-rule", "--ecr-repository-prefix", "upstream",
                      "--credential-arn", other)
    assert updated["credentialArn"] == other and updated["upstreamRepositoryPrefix"] == "mirror"
    assert updated["updatedAt"] >= created["createdAt"]
    wrong = ecr_cli(berth, "validate-pull-through-cache-rule", "--ecr-repository-prefix", "upstream")
    assert wrong["isValid"] is False and "refused" in wrong["failure"], wrong

    deleted = ecr_cli(berth, "delete-pull-through-cache-rule", "--ecr-repository-prefix", "upstream")
    assert deleted["ecrRepositoryPrefix"] == "upstream" and deleted["credentialArn"] == other
    missing = ecr_cli(berth, "delete-pull-through-cache-rule", "--ecr-repository-prefix", "upstream", check=False)
    assert missing.returncode != 0 and "PullThroughCacheRuleNotFoundException" in missing.stderr


def test_rule_errors_through_boto3(berth, upstream):
    ecr = berth.client()
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl=upstream.url)

    def refused(code, call, **kw):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(**kw)
        assert error_code(e) == code, e.value.response
        return e.value.response["Error"]["Message"]

    create = ecr.create_pull_through_cache_rule
    assert "hub" in refused("PullThroughCacheRuleAlreadyExistsException", create,
                            ecrRepositoryPrefix="hub/", upstreamRegistryUrl=upstream.url)
    for op in (ecr.delete_pull_through_cache_rule, ecr.validate_pull_through_cache_rule):
        refused("PullThroughCacheRuleNotFoundException", op, ecrRepositoryPrefix="nope")
    refused("PullThroughCacheRuleNotFoundException", ecr.describe_pull_through_cache_rules,
            ecrRepositoryPrefixes=["hub", "nope"])
    refused("PullThroughCacheRuleNotFoundException", ecr.update_pull_through_cache_rule,
            ecrRepositoryPrefix="nope", credentialArn=f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:ecr-pullthroughcache/x-AbCdEf")
    # Berth has no IAM roles to assume.
    message = refused("InvalidParameterException", create, ecrRepositoryPrefix="ecr", upstreamRegistryUrl=upstream.url,
                      customRoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/puller")
    assert "customRoleArn is not supported" in message
    # Plain http only for loopback hosts; an upstream that does not answer is unsupported.
    refused("UnsupportedUpstreamRegistryException", create, ecrRepositoryPrefix="plain",
            upstreamRegistryUrl="http://registry.example.com")
    closed = free_port()
    assert "cannot be used" in refused("UnsupportedUpstreamRegistryException", create, ecrRepositoryPrefix="closed",
                                       upstreamRegistryUrl=f"http://127.0.0.1:{closed}")
    # An answer that is not a registry's.
    refused("UnsupportedUpstreamRegistryException", create, ecrRepositoryPrefix="notreg",
            upstreamRegistryUrl=berth.endpoint + "/no-registry-here")
    refused("InvalidParameterException", create, ecrRepositoryPrefix="bad", upstreamRegistryUrl="ftp://x")
    # The model's own checks (botocore checks lengths itself): the prefix pattern, its longest.
    refused("InvalidParameterException", create, ecrRepositoryPrefix="Hub", upstreamRegistryUrl=upstream.url)
    refused("InvalidParameterException", create, ecrRepositoryPrefix="x" * 31, upstreamRegistryUrl=upstream.url)

    # Nothing of the refused creates was stored; pages of one.
    for p in ["p1", "p2"]:
        create(ecrRepositoryPrefix=p, upstreamRegistryUrl=upstream.url)
    seen, token = [], None
    while True:
        kw = {"maxResults": 1, **({"nextToken": token} if token else {})}
        page = ecr.describe_pull_through_cache_rules(**kw)
        seen += [r["ecrRepositoryPrefix"] for r in page["pullThroughCacheRules"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == ["hub", "p1", "p2"]

    # ECR's quota: 50 rules per registry.
    for i in range(47):
        create(ecrRepositoryPrefix=f"q{i:02}", upstreamRegistryUrl=upstream.url)
    refused("LimitExceededException", create, ecrRepositoryPrefix="q99", upstreamRegistryUrl=upstream.url)
    assert len(ecr.describe_pull_through_cache_rules(maxResults=1000)["pullThroughCacheRules"]) == 50


def test_each_secret_error(berth, upstream):
    ecr, sm = berth.client(), berth.client("secretsmanager")
    create = ecr.create_pull_through_cache_rule
    base = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:ecr-pullthroughcache"

    def refused(code, **kw):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            create(ecrRepositoryPrefix="hub", upstreamRegistryUrl=upstream.url, **kw)
        assert error_code(e) == code, e.value.response
        return e.value.response["Error"]["Message"]

    refused("SecretNotFoundException", credentialArn=f"{base}/never-created-AbCdEf")
    # Another account's secret, or another region's: the registry cannot read it.
    refused("UnableToAccessSecretException", credentialArn=f"arn:aws:secretsmanager:{REGION}:999999999999:secret:ecr-pullthroughcache/x-AbCdEf")
    refused("UnableToAccessSecretException", credentialArn=f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT_ID}:secret:ecr-pullthroughcache/x-AbCdEf")
    doomed = put_secret(berth, "ecr-pullthroughcache/doomed", {"username": USER, "accessToken": PASSWORD})
    sm.delete_secret(SecretId=doomed, RecoveryWindowInDays=7)
    assert "scheduled for deletion" in refused("UnableToAccessSecretException", credentialArn=doomed)
    garbled = put_secret(berth, "ecr-pullthroughcache/garbled", "user:password")
    assert "username" in refused("UnableToDecryptSecretValueException", credentialArn=garbled)
    # The caller needs no secretsmanager:GetSecretValue: the registry reads the secret itself.
    good = put_secret(berth, "ecr-pullthroughcache/good", {"username": USER, "accessToken": PASSWORD})
    key, secret = berth.create_user("rules-admin", policy={
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ecr:*PullThroughCacheRule*"], "Resource": "*"}],
    })
    admin = berth.client(key=key, secret=secret)
    admin.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl=upstream.url, credentialArn=good)
    assert admin.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")["isValid"] is True
    with pytest.raises(botocore.exceptions.ClientError) as e:
        berth.client("secretsmanager", key=key, secret=secret).get_secret_value(SecretId=good)
    assert error_code(e) == "AccessDeniedException"
    # A secret deleted after the rule was made: validation says why, as a failure.
    sm.delete_secret(SecretId=good, ForceDeleteWithoutRecovery=True)
    answer = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")
    assert answer["isValid"] is False and "does not exist" in answer["failure"], answer
    # Without the rule actions, nothing: the operations are authorized as ecr:<Operation>.
    reader, reader_secret = berth.create_user("reader", policy={
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ecr:Describe*"], "Resource": "*"}],
    })
    outsider = berth.client(key=reader, secret=reader_secret)
    assert [r["ecrRepositoryPrefix"] for r in outsider.describe_pull_through_cache_rules()["pullThroughCacheRules"]] == ["hub"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        outsider.delete_pull_through_cache_rule(ecrRepositoryPrefix="hub")
    assert error_code(e) == "AccessDeniedException"


@single_node("it alters a sealed value in the node's SQLite database")
def test_a_secret_that_cannot_be_unsealed(berth, upstream):
    """A secret whose stored value no longer opens under the master keyring (altered at rest):
    the rule is refused with UnableToDecryptSecretValueException, and a rule made before the
    damage fails its validation with the reason."""
    import sqlite3

    ecr = berth.client()
    arn = put_secret(berth, "ecr-pullthroughcache/damaged", {"username": USER, "accessToken": PASSWORD})
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="before", upstreamRegistryUrl=upstream.url,
                                       credentialArn=arn)
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="before")["isValid"] is True
    db = sqlite3.connect(os.path.join(berth.data_dir, "data", "meta.db"), timeout=10)
    (sealed,) = db.execute("SELECT sealed_value FROM managed_secret_versions WHERE secret_arn = ?", (arn,)).fetchone()
    # One character of the sealed text changed: its authentication tag no longer matches.
    at = len(sealed) - 5
    damaged = sealed[:at] + ("A" if sealed[at] != "A" else "B") + sealed[at + 1:]
    db.execute("UPDATE managed_secret_versions SET sealed_value = ? WHERE secret_arn = ?", (damaged, arn))
    db.commit()
    db.close()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="after", upstreamRegistryUrl=upstream.url,
                                           credentialArn=arn)
    assert error_code(e) == "UnableToDecryptSecretValueException", e.value.response
    assert "cannot be decrypted" in e.value.response["Error"]["Message"]
    answer = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="before")
    assert answer["isValid"] is False and "cannot be decrypted" in answer["failure"], answer
    # Secrets Manager itself says the same of the value.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        berth.client("secretsmanager").get_secret_value(SecretId=arn)
    assert error_code(e) == "DecryptionFailure", e.value.response


def test_validation_through_the_bearer_token_flow(berth):
    hub = TokenRegistry()
    try:
        ecr = berth.client()
        right = put_secret(berth, "ecr-pullthroughcache/hub", {"username": USER, "accessToken": PASSWORD})
        wrong = put_secret(berth, "ecr-pullthroughcache/hub-wrong", {"username": USER, "accessToken": "nope"})
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl=hub.url, credentialArn=right)
        assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")["isValid"] is True
        token_requests = [p for p in hub.requests if p.startswith("/token")]
        assert token_requests and "service=token-registry" in token_requests[-1], hub.requests
        ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="hub", credentialArn=wrong)
        answer = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")
        assert answer["isValid"] is False and "token service" in answer["failure"], answer
        # Without a credential the token service is asked anonymously, and refuses here.
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="anon", upstreamRegistryUrl=hub.url)
        assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="anon")["isValid"] is False
    finally:
        hub.stop()
    open_hub = TokenRegistry(anonymous=True)
    try:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="public", upstreamRegistryUrl=open_hub.url)
        assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="public")["isValid"] is True
    finally:
        open_hub.stop()


def test_validation_against_another_berth(berth):
    with tempfile.TemporaryDirectory() as d:
        # Another registry of its own (its own stores, whatever the topology of this run).
        other = Berth(d, cluster=False)
        try:
            key, secret = other.create_user("puller", policy={
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                                                             "ecr:GetDownloadUrlForLayer"], "Resource": "*"}],
            })
            ecr = berth.client()
            right = put_secret(berth, "ecr-pullthroughcache/berth", {"username": key, "accessToken": secret})
            wrong = put_secret(berth, "ecr-pullthroughcache/berth-wrong", {"username": key, "accessToken": "x" * 40})
            # The challenge (`service="ecr.amazonaws.com"`) says it is ECR-like; `ecr` says so too.
            ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="berth", upstreamRegistryUrl=other.endpoint,
                                               credentialArn=right)
            ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="berth-ecr", upstreamRegistryUrl=other.endpoint,
                                               credentialArn=right, upstreamRegistry="ecr")
            for prefix in ["berth", "berth-ecr"]:
                answer = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
                assert answer["isValid"] is True, answer
            ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="berth", credentialArn=wrong)
            answer = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="berth")
            assert answer["isValid"] is False and "GetAuthorizationToken" in answer["failure"], answer
        finally:
            other.stop()


def push_upstream(docker, upstream, tmp_path, name, content):
    """Pushes a one-layer image to the reference registry with the Docker engine; returns the
    manifest digest the upstream holds."""
    ref = f"127.0.0.1:{upstream.port}/{name}"
    tar = tmp_path / "rootfs.tar"
    rootfs_tar(tar, content)
    docker.run("import", str(tar), ref)
    docker.run("login", "--username", USER, "--password-stdin", f"127.0.0.1:{upstream.port}", stdin=PASSWORD)
    push = docker.run("push", ref)
    digest = next(w for w in push.stdout.split() if w.startswith("sha256:"))
    docker.run("rmi", ref)
    return digest


def upstream_requests(upstream, needle):
    """The upstream's access-log lines naming `needle`."""
    with open(upstream.log_path, errors="replace") as f:
        return [line for line in f if needle in line and ('"GET ' in line or '"HEAD ' in line)]


def cache_rule(berth, upstream, prefix="cache"):
    arn = put_secret(berth, f"ecr-pullthroughcache/{prefix}", {"username": USER, "accessToken": PASSWORD})
    berth.client().create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=upstream.url,
                                                   credentialArn=arn)


def test_docker_pull_fills_the_cache_and_survives_the_upstream_going_away(berth, docker, upstream, tmp_path):
    import hashlib

    import requests

    digest = push_upstream(docker, upstream, tmp_path, "team/app:v1", "version=1\n")
    cache_rule(berth, upstream)
    ref = f"{berth.host}/cache/team/app:v1"
    password = berth.aws("ecr", "get-login-password").stdout
    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=password)
    pull = docker.run("pull", ref)
    assert "Downloaded newer image" in pull.stdout, pull.stdout
    # The same manifest, byte for byte: the digest the upstream holds.
    assert digest in docker.run("inspect", "--format", "{{json .RepoDigests}}", ref).stdout

    # Stored as an ordinary repository, created by the fill; the blobs are the upstream's bytes.
    ecr = berth.client()
    repo = ecr.describe_repositories(repositoryNames=["cache/team/app"])["repositories"][0]
    assert repo["repositoryName"] == "cache/team/app"
    for _ in range(100):  # the image is stored once its blobs are
        images = ecr.list_images(repositoryName="cache/team/app")["imageIds"]
        if images:
            break
        time.sleep(0.1)
    assert images == [{"imageDigest": digest, "imageTag": "v1"}], images
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    up = requests.Session()
    up.auth = (USER, PASSWORD)
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    manifest = up.get(f"{upstream.url}/v2/team/app/manifests/v1", headers=accept).json()
    for layer in [manifest["config"], *manifest["layers"]]:
        mine = s.get(f"{berth.endpoint}/v2/cache/team/app/blobs/{layer['digest']}").content
        assert "sha256:" + hashlib.sha256(mine).hexdigest() == layer["digest"]
        assert mine == up.get(f"{upstream.url}/v2/team/app/blobs/{layer['digest']}").content

    # The upstream gone, the cache still serves the image.
    fetched = len(upstream_requests(upstream, "/v2/team/app/"))
    upstream.stop()
    docker.run("rmi", ref)
    again = docker.run("pull", ref)
    assert "Downloaded newer image" in again.stdout
    assert digest in docker.run("inspect", "--format", "{{json .RepoDigests}}", ref).stdout
    assert fetched > 0
    # A miss with the upstream down is the upstream's failure (503, to be retried), not "not
    # found"; Docker shows the status, the body says why.
    missing = docker.run("pull", f"{berth.host}/cache/team/other:v1", check=False)
    assert missing.returncode != 0 and "503" in missing.stderr, missing.stderr
    r = s.get(f"{berth.endpoint}/v2/cache/team/other/manifests/v1", headers=accept)
    assert r.status_code == 503 and r.headers["Retry-After"], r.text
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE" and "could not connect" in r.text, r.text
    # BatchGetImage reports it in ECR's failure code.
    failed = ecr.batch_get_image(repositoryName="cache/team/other", imageIds=[{"imageTag": "v1"}])
    assert failed["failures"][0]["failureCode"] == "UpstreamUnavailable", failed


def test_docker_pull_through_a_registry_behind_the_bearer_token_flow(berth, docker, tmp_path):
    """The reference registry with distribution's token auth, its tokens from a token service
    that works as Docker Hub's: the fill asks the service for a token scoped to the upstream
    repository with the rule's credential, and the image arrives intact."""
    import requests

    with tempfile.TemporaryDirectory() as d:
        tokens = TokenService(d)
        upstream = ReferenceRegistry(d, auth=False, token_service=tokens)
        try:
            digest = push_upstream(docker, upstream, tmp_path, "team/app:v1", "behind a token service\n")
            # Without a token the upstream answers nothing.
            r = requests.get(f"{upstream.url}/v2/team/app/manifests/v1")
            assert r.status_code == 401 and 'scope="repository:team/app:pull"' in r.headers["WWW-Authenticate"]

            ecr = berth.client()
            right = put_secret(berth, "ecr-pullthroughcache/hub", {"username": USER, "accessToken": PASSWORD})
            ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl=upstream.url,
                                               credentialArn=right)
            assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")["isValid"] is True
            asked_before = len(tokens.requests)
            password = berth.aws("ecr", "get-login-password").stdout
            docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=password)
            ref = f"{berth.host}/hub/team/app:v1"
            pull = docker.run("pull", ref)
            assert "Downloaded newer image" in pull.stdout, pull.stdout
            assert digest in docker.run("inspect", "--format", "{{json .RepoDigests}}", ref).stdout
            asked = tokens.requests[asked_before:]
            # Berth asked with the rule's credential, for the upstream repository's pull scope,
            # and reused its token: one for the manifest and the blobs together (per node).
            assert asked and all(user == USER for _, user in asked), asked
            assert all("scope=repository%3Ateam%2Fapp%3Apull" in path or "scope=repository:team/app:pull" in path
                       for path, _ in asked), asked
            assert all("service=upstream-registry" in path for path, _ in asked), asked
            assert len(asked) <= (Cluster.NODES if CLUSTER else 1), asked
            # The first request (of each node) learns the challenge; every later one carries
            # the token.
            berths = [line for line in upstream_requests(upstream, "/v2/team/app/") if "pull-through cache" in line]
            refused = [line for line in berths if '" 401 ' in line]
            assert refused[:1] == berths[:1] and len(refused) <= (Cluster.NODES if CLUSTER else 1), berths
            blobs = [line for line in berths if "/blobs/" in line]
            assert blobs and all('" 200 ' in line or '" 307 ' in line for line in blobs), berths

            # A credential the token service refuses: a miss is the upstream's refusal, in
            # ECR's failure code, and the upstream's registry sees no authenticated request.
            wrong = put_secret(berth, "ecr-pullthroughcache/hub-wrong", {"username": USER, "accessToken": "nope"})
            ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub-wrong", upstreamRegistryUrl=upstream.url,
                                               credentialArn=wrong)
            failed = ecr.batch_get_image(repositoryName="hub-wrong/team/app", imageIds=[{"imageTag": "v1"}])
            assert not failed["images"], failed
            assert failed["failures"][0]["failureCode"] == "UpstreamAccessDenied", failed
        finally:
            upstream.stop()
            tokens.stop()


def test_a_fill_needs_the_import_and_create_actions(berth, upstream, tmp_path, docker):
    import requests

    push_upstream(docker, upstream, tmp_path, "team/app:v1", "version=1\n")
    push_upstream(docker, upstream, tmp_path, "team/tool:v1", "version=1\n")
    cache_rule(berth, upstream)
    pull_actions = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability"]

    def session(actions):
        key, secret = berth.create_user("u" + secrets.token_hex(4), policy={
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
        s = requests.Session()
        s.auth = ("AWS", berth.token(key=key, secret=secret))
        s.headers["Accept"] = "application/vnd.docker.distribution.manifest.v2+json"
        return s

    url = f"{berth.endpoint}/v2/cache/team/app/manifests/v1"
    before = len(upstream_requests(upstream, "/v2/team/app/"))
    # Pull actions alone: no fill, and the upstream is not asked.
    r = session(pull_actions).get(url)
    assert r.status_code == 403 and "ecr:BatchImportUpstreamImage" in r.text, r.text
    # The import action without ecr:CreateRepository, for a repository that does not exist yet.
    r = session(pull_actions + ["ecr:BatchImportUpstreamImage"]).get(url)
    assert r.status_code == 403 and "ecr:CreateRepository" in r.text, r.text
    assert len(upstream_requests(upstream, "/v2/team/app/")) == before
    # Both: the fill happens.
    filler = session(pull_actions + ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"])
    r = filler.get(url)
    assert r.status_code == 200, r.text
    assert len(upstream_requests(upstream, "/v2/team/app/")) > before
    # Once the repository exists, the import action suffices for another image in it...
    berth.client().create_repository(repositoryName="cache/team/tool")
    r = session(pull_actions + ["ecr:BatchImportUpstreamImage"]).get(f"{berth.endpoint}/v2/cache/team/tool/manifests/v1")
    assert r.status_code == 200, r.text
    # ...and once stored, pulling needs only the pull actions.
    for _ in range(100):
        if berth.client().list_images(repositoryName="cache/team/app")["imageIds"]:
            break
        time.sleep(0.1)
    assert session(pull_actions).get(url).status_code == 200


def test_a_moved_tag_is_seen_after_the_refresh_interval_and_not_before(berth, docker, upstream, tmp_path):
    import requests

    first = push_upstream(docker, upstream, tmp_path, "team/app:v1", "version=1\n")
    second = push_upstream(docker, upstream, tmp_path, "team/app:v2", "version=2\n")
    third = push_upstream(docker, upstream, tmp_path, "team/app:v3", "version=3\n")
    cache_rule(berth, upstream)
    status, out = berth_api(berth, "UpdatePullThroughCacheRuleRefresh",
                            {"ecrRepositoryPrefix": "cache", "refreshIntervalSeconds": 3})
    assert status == 200 and out["refreshIntervalSeconds"] == 3 and out["ecrRepositoryPrefix"] == "cache", out

    s = requests.Session()
    s.auth = ("AWS", berth.token())
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    url = f"{berth.endpoint}/v2/cache/team/app/manifests/v1"
    assert s.get(url, headers=accept).headers["Docker-Content-Digest"] == first
    ecr = berth.client()
    for _ in range(100):
        if ecr.list_images(repositoryName="cache/team/app")["imageIds"]:
            break
        time.sleep(0.1)

    up = requests.Session()
    up.auth = (USER, PASSWORD)

    def move_upstream_v1_to(tag):
        m = up.get(f"{upstream.url}/v2/team/app/manifests/{tag}", headers=accept)
        r = up.put(f"{upstream.url}/v2/team/app/manifests/v1", data=m.content,
                   headers={"Content-Type": m.headers["Content-Type"]})
        assert r.status_code == 201, r.text

    filled = time.time()
    move_upstream_v1_to("v2")
    # Within the interval the cached image is served, however often it is pulled.
    while time.time() - filled < 2.0:
        assert s.get(url, headers=accept).headers["Docker-Content-Digest"] == first
        time.sleep(0.2)
    time.sleep(max(0.0, filled + 3.2 - time.time()))
    assert s.get(url, headers=accept).headers["Docker-Content-Digest"] == second
    for _ in range(100):
        ids = ecr.list_images(repositoryName="cache/team/app", filter={"tagStatus": "TAGGED"})["imageIds"]
        if {"imageDigest": second, "imageTag": "v1"} in ids:
            break
        time.sleep(0.1)
    assert {"imageDigest": second, "imageTag": "v1"} in ids, ids

    # A forced refresh sees a move at once, whatever the interval (back to ECR's 24 hours).
    status, out = berth_api(berth, "UpdatePullThroughCacheRuleRefresh", {"ecrRepositoryPrefix": "cache"})
    assert status == 200 and out["refreshIntervalSeconds"] == 24 * 3600, out
    time.sleep(2.1)  # every node's view of the rule has caught up
    move_upstream_v1_to("v3")
    status, out = berth_api(berth, "RefreshCachedImage", {"repositoryName": "cache/team/app", "imageTag": "v1"})
    assert status == 200, out
    assert out["changed"] is True and out["imageDigest"] == third and out["previousImageDigest"] == second, out
    assert s.get(url, headers=accept).headers["Docker-Content-Digest"] == third
    # The same through `berth admin`: nothing moved since.
    out = berth.admin("refresh-cached-image", "cache/team/app", "v1")
    assert out["changed"] is False and out["imageDigest"] == third, out
    out = berth.admin("set-pull-through-refresh", "cache", "60")
    assert out["refreshIntervalSeconds"] == 60, out

    # The target's refusals: an unknown operation, a bad interval, and a caller without the
    # import action.
    status, out = berth_api(berth, "NoSuchOperation", {})
    assert (status, out["__type"]) == (400, "UnknownOperationException"), out
    status, out = berth_api(berth, "UpdatePullThroughCacheRuleRefresh",
                            {"ecrRepositoryPrefix": "cache", "refreshIntervalSeconds": 0})
    assert (status, out["__type"]) == (400, "InvalidParameterException"), out
    status, out = berth_api(berth, "RefreshCachedImage", {"repositoryName": "cache/team/app"})
    assert (status, out["__type"]) == (400, "ValidationException"), out
    key, secret = berth.create_user("reader", policy={
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:UpdatePullThroughCacheRule"],
                       "Resource": "*"}]})
    status, out = berth_api(berth, "RefreshCachedImage", {"repositoryName": "cache/team/app", "imageTag": "v1"},
                            key=key, secret=secret)
    assert (status, out["__type"]) == (403, "AccessDeniedException"), out
    assert "ecr:BatchImportUpstreamImage" in out["message"]
    status, out = berth_api(berth, "UpdatePullThroughCacheRuleRefresh",
                            {"ecrRepositoryPrefix": "cache", "refreshIntervalSeconds": 5}, key=key, secret=secret)
    assert status == 200, out


def push_oci_upstream(upstream, repo, tag, payload, *more_layers):
    """Pushes a small OCI image to the reference registry over its API; returns (manifest
    digest, first layer's digest)."""
    import hashlib

    import requests

    s = requests.Session()
    s.auth = (USER, PASSWORD)

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = s.post(f"{upstream.url}/v2/{repo}/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        sep = "&" if "?" in location else "?"
        r = s.put(f"{location}{sep}digest={digest}", data=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return {"digest": digest, "size": len(data)}

    config = blob(json.dumps({"architecture": "amd64", "os": "linux"}).encode())
    layers = [blob(p) for p in (payload, *more_layers)]
    layer = layers[0]
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **config),
        "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **l) for l in layers],
    }).encode()
    r = s.put(f"{upstream.url}/v2/{repo}/manifests/{tag}", data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], layer["digest"]


def test_cache_metrics_per_rule(upstream):
    import requests

    _, layer = push_oci_upstream(upstream, "team/app", "v1", os.urandom(300_000))
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as d:
        # /metrics is each node's own: one node, whatever the topology of this run.
        b = Berth(d, extra_env={"BERTH_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}, cluster=False)
        try:
            cache_rule(b, upstream)
            s = requests.Session()
            s.auth = ("AWS", b.token())
            url = f"{b.endpoint}/v2/cache/team/app"
            assert s.get(f"{url}/manifests/v1").status_code == 200
            blob = s.get(f"{url}/blobs/{layer}")
            assert blob.status_code == 200 and len(blob.content) == 300_000
            assert s.get(f"{url}/manifests/v1").status_code == 200
            assert s.get(f"{b.endpoint}/v2/cache/team/missing/manifests/v1").status_code == 404

            def value(name, **labels):
                text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics").text
                want = {"account": ACCOUNT_ID, "rule": "cache", **labels}
                for line in text.splitlines():
                    if line.startswith(name + "{"):
                        got = dict(kv.split("=", 1) for kv in line[len(name) + 1:line.index("}")].split(","))
                        if {k: v.strip('"') for k, v in got.items()} == want:
                            return float(line.rsplit(" ", 1)[1])
                return 0.0

            for _ in range(50):
                if value("berth_pull_through_upstream_bytes_total") >= 300_000:
                    break
                time.sleep(0.1)
            assert value("berth_pull_through_misses_total") == 2  # v1, and the missing one
            assert value("berth_pull_through_hits_total") >= 1
            assert value("berth_pull_through_upstream_requests_total", kind="manifest") == 2
            assert value("berth_pull_through_upstream_requests_total", kind="blob") == 2  # config and layer
            assert value("berth_pull_through_upstream_bytes_total") >= 300_000
        finally:
            b.stop()


def test_concurrent_cold_pulls_fetch_each_blob_once(berth, upstream, tmp_path):
    """16 skopeo copies of one image at once, through one node or spread over three by nginx:
    the upstream's access log shows each blob fetched once."""
    import concurrent.futures
    import re

    import requests

    layers = [os.urandom(3 * 1024 * 1024 + i) for i in range(3)]
    push_oci_upstream(upstream, "team/big", "v1", *layers)
    up = requests.Session()
    up.auth = (USER, PASSWORD)
    manifest = up.get(f"{upstream.url}/v2/team/big/manifests/v1",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    blobs = [manifest["config"], *manifest["layers"]]
    image_bytes = sum(b["size"] for b in blobs)
    cache_rule(berth, upstream)
    token = berth.token()

    def pull(i):
        return subprocess.run(
            ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--src-creds", f"AWS:{token}",
             f"docker://{berth.host}/cache/team/big:v1", f"dir:{tmp_path}/copy{i}"],
            capture_output=True, text=True, timeout=300)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(pull, range(16)))
    for r in results:
        assert r.returncode == 0, r.stderr
    for i in range(16):
        for b in blobs:
            path = tmp_path / f"copy{i}" / b["digest"].split(":")[1]
            assert path.stat().st_size == b["size"]

    with open(upstream.log_path, errors="replace") as f:
        log = f.read()
    fetched_bytes = 0
    for b in blobs:
        served = re.findall(rf'"GET /v2/team/big/blobs/{b["digest"]} HTTP/1.1" 200 (\d+)', log)
        assert len(served) == 1, f"{b['digest']} fetched {len(served)} times"
        fetched_bytes += int(served[0])
    assert fetched_bytes == image_bytes


def wait_images(ecr, repo, count):
    for _ in range(150):
        try:
            ids = ecr.list_images(repositoryName=repo)["imageIds"]
        except ecr.exceptions.RepositoryNotFoundException:
            ids = []
        if len(ids) >= count:
            return ids
        time.sleep(0.1)
    raise AssertionError(f"{repo} holds {ids}, not {count} images")


def test_another_berth_as_upstream_with_the_image_referrers(berth):
    """A Berth upstream (a registry token by GetAuthorizationToken): the image arrives
    bit-identical with its SBOM referrer, seen through the referrers API, ListImageReferrers
    and oras-py."""
    import hashlib

    import oras.provider
    import requests

    from conftest import push_image

    with tempfile.TemporaryDirectory() as d:
        other = Berth(d, cluster=False)
        try:
            other.client().create_repository(repositoryName="team/app")
            subject, subject_manifest, layer = push_image(other, "team/app", "v1", 7)
            empty = b"{}"
            empty_digest = "sha256:" + hashlib.sha256(empty).hexdigest()
            sbom = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5"}).encode()
            sbom_digest = "sha256:" + hashlib.sha256(sbom).hexdigest()
            up = requests.Session()
            up.auth = ("AWS", other.token())
            for blob, digest in [(empty, empty_digest), (sbom, sbom_digest)]:
                r = up.post(f"{other.endpoint}/v2/team/app/blobs/uploads/?digest={digest}", data=blob)
                assert r.status_code == 201, r.text
            oci = "application/vnd.oci.image.manifest.v1+json"
            referrer = json.dumps({
                "schemaVersion": 2, "mediaType": oci, "artifactType": "application/vnd.cyclonedx+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
                "layers": [{"mediaType": "application/vnd.cyclonedx+json", "digest": sbom_digest, "size": len(sbom)}],
                "subject": {"mediaType": oci, "digest": subject, "size": len(subject_manifest)},
            }).encode()
            referrer_digest = "sha256:" + hashlib.sha256(referrer).hexdigest()
            r = up.put(f"{other.endpoint}/v2/team/app/manifests/{referrer_digest}", data=referrer,
                       headers={"Content-Type": oci})
            assert r.status_code == 201, r.text

            key, secret = other.create_user("puller", policy={
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                                                             "ecr:GetDownloadUrlForLayer"], "Resource": "*"}]})
            arn = put_secret(berth, "ecr-pullthroughcache/berth", {"username": key, "accessToken": secret})
            ecr = berth.client()
            ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="berth", upstreamRegistryUrl=other.endpoint,
                                               credentialArn=arn)
            # Filled through BatchGetImage this time.
            got = ecr.batch_get_image(repositoryName="berth/team/app", imageIds=[{"imageTag": "v1"}])
            assert got["failures"] == [] and got["images"][0]["imageId"]["imageDigest"] == subject, got
            assert got["images"][0]["imageManifest"] == subject_manifest
            # The layer through GetDownloadUrlForLayer.
            url = ecr.get_download_url_for_layer(repositoryName="berth/team/app", layerDigest=layer)["downloadUrl"]
            mine = requests.get(url).content
            assert "sha256:" + hashlib.sha256(mine).hexdigest() == layer
            ids = wait_images(ecr, "berth/team/app", 2)  # the image, then its referrer
            assert {i["imageDigest"] for i in ids} == {subject, referrer_digest}, ids

            s = requests.Session()
            s.auth = ("AWS", berth.token())
            index = s.get(f"{berth.endpoint}/v2/berth/team/app/referrers/{subject}").json()
            assert [m["digest"] for m in index["manifests"]] == [referrer_digest], index
            assert index["manifests"][0]["artifactType"] == "application/vnd.cyclonedx+json"
            refs = ecr.list_image_referrers(repositoryName="berth/team/app", subjectId={"imageDigest": subject})
            assert [r["digest"] for r in refs["referrers"]] == [referrer_digest], refs
            sbom_back = s.get(f"{berth.endpoint}/v2/berth/team/app/blobs/{sbom_digest}").content
            assert sbom_back == sbom
            client = oras.provider.Registry(hostname=berth.host, insecure=True, auth_backend="basic")
            client.auth.set_basic_auth("AWS", berth.token())
            listed = client.get_manifest(f"{berth.host}/berth/team/app@{referrer_digest}")
            assert listed["subject"]["digest"] == subject
        finally:
            other.stop()


def push_index_upstream(upstream, repo, tag):
    """An index of two platforms' images in the reference registry; returns (index digest,
    child digests)."""
    import hashlib

    import requests

    children = []
    for arch in ["amd64", "arm64"]:
        digest, _ = push_oci_upstream(upstream, repo, f"only-{arch}", os.urandom(50_000))
        children.append(digest)
    s = requests.Session()
    s.auth = (USER, PASSWORD)
    manifests = []
    for arch, digest in zip(["amd64", "arm64"], children):
        body = s.get(f"{upstream.url}/v2/{repo}/manifests/{digest}",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                          "size": len(body), "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": manifests}).encode()
    r = s.put(f"{upstream.url}/v2/{repo}/manifests/{tag}", data=index,
              headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201, r.text
    return "sha256:" + hashlib.sha256(index).hexdigest(), children


def test_a_multi_arch_image_through_the_cache_with_skopeo_copy_all(berth, upstream, tmp_path):
    index, children = push_index_upstream(upstream, "team/multi", "v1")
    cache_rule(berth, upstream)
    token = berth.token()
    out = tmp_path / "copy"
    r = subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--src-creds", f"AWS:{token}",
                        f"docker://{berth.host}/cache/team/multi:v1", f"oci:{out}:v1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    layout = json.loads((out / "index.json").read_text())
    assert layout["manifests"][0]["digest"] == index
    for child in children:
        assert (out / "blobs" / "sha256" / child.split(":")[1]).exists()
    # Stored: the index and every platform's image.
    ids = wait_images(berth.client(), "cache/team/multi", 3)
    assert {i["imageDigest"] for i in ids} == {index, *children}, ids


class RateLimitedRegistry(LoopbackServer):
    """An upstream that answers `/v2/` and then only 429 Too Many Requests, as Docker Hub does
    past its pull limit."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                status = 200 if self.path == "/v2/" else 429
                body = b"{}" if status == 200 else b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 429:
                    self.send_header("Retry-After", "60")
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

        self._serve(Handler)



def test_a_rate_limited_upstream_is_reported_as_such(berth):
    import requests

    limited = RateLimitedRegistry()
    try:
        ecr = berth.client()
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl=limited.url)
        failed = ecr.batch_get_image(repositoryName="hub/library/nginx", imageIds=[{"imageTag": "1.27"}])
        assert failed["images"] == [] and failed["failures"][0]["failureCode"] == "UpstreamTooManyRequests", failed
        r = requests.get(f"{berth.endpoint}/v2/hub/library/nginx/manifests/1.27", auth=("AWS", berth.token()))
        assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS", r.text
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ecr.get_download_url_for_layer(repositoryName="hub/library/nginx", layerDigest="sha256:" + "a" * 64)
        assert error_code(e) == "UnableToGetUpstreamLayerException", e.value.response
    finally:
        limited.stop()


def test_rules_and_cache_templates_of_a_second_account(berth, upstream):
    import requests

    other_account = "222233334444"
    other = berth.admin("create-account", other_account)["AccessKey"]
    key, secret = other["AccessKeyId"], other["SecretAccessKey"]
    a, b = berth.client(), berth.client(key=key, secret=secret)
    push_oci_upstream(upstream, "team/app", "v1", os.urandom(10_000))
    # B's own secret, rule and PULL_THROUGH_CACHE template; A sees none of them.
    arn = b_secret = berth.client("secretsmanager", key=key, secret=secret).create_secret(
        Name="ecr-pullthroughcache/up", SecretString=json.dumps({"username": USER, "accessToken": PASSWORD}))["ARN"]
    assert f":{other_account}:secret:" in b_secret
    rule = b.create_pull_through_cache_rule(ecrRepositoryPrefix="up", upstreamRegistryUrl=upstream.url,
                                            credentialArn=arn)
    assert rule["registryId"] == other_account
    b.create_repository_creation_template(prefix="up", appliedFor=["PULL_THROUGH_CACHE"],
                                          imageTagMutability="IMMUTABLE",
                                          resourceTags=[{"Key": "source", "Value": "cache"}])
    assert a.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
    assert b.validate_pull_through_cache_rule(ecrRepositoryPrefix="up")["isValid"] is True
    # A's secret cannot serve B's rule.
    a_arn = put_secret(berth, "ecr-pullthroughcache/a-only", {"username": USER, "accessToken": PASSWORD})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        b.update_pull_through_cache_rule(ecrRepositoryPrefix="up", credentialArn=a_arn)
    assert error_code(e) == "UnableToAccessSecretException"

    b_token = berth.token(key=key, secret=secret)
    r = requests.get(f"{berth.endpoint}/v2/up/team/app/manifests/v1", auth=("AWS", b_token),
                     headers={"Host": f"{other_account}.{berth.host}",
                              "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text
    repo = b.describe_repositories(repositoryNames=["up/team/app"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["registryId"] == other_account
    assert b.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [{"Key": "source", "Value": "cache"}]
    with pytest.raises(a.exceptions.RepositoryNotFoundException):
        a.describe_repositories(repositoryNames=["up/team/app"])
