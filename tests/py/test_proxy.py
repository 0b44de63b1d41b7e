"""Behind a load balancer: the real nginx in front of Berth, configured as README's "Running
behind a load balancer" says. `X-Forwarded-For` / `-Proto` count only from a trusted proxy:
clients bound to 127.0.0.2 and 127.0.0.3 are told apart by an `aws:SourceIp` condition through
nginx, a client that forges the headers directly gets nothing for it, and the endpoints Berth
names carry the scheme the client used."""
import json
import tempfile

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from requests.adapters import HTTPAdapter

from conftest import ACCOUNT_ID, KEY_ID, REGION, SECRET, Berth, push_image, single_node, start_nginx

pytestmark = single_node('it starts its own node behind its own nginx')


class SourceAddress(HTTPAdapter):
    """Connections from a chosen loopback address."""

    def __init__(self, ip):
        self.ip = ip
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.ip, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(ip):
    s = requests.Session()
    s.mount("http://", SourceAddress(ip))
    return s


@pytest.fixture
def behind_nginx():
    with tempfile.TemporaryDirectory() as d:
        berth = Berth(d, extra_env={"BERTH_TRUSTED_PROXIES": "127.0.0.1"})
        proc, lb = start_nginx(d, [berth.host])
        try:
            yield berth, lb
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            berth.stop()


def ecr_call(session, host, op, body, headers=None):
    """A SigV4-signed ECR API call sent by `session`, as the AWS CLI would send it to `host`."""
    req = AWSRequest(method="POST", url=f"http://{host}/", data=json.dumps(body), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{op}",
        **(headers or {}),
    })
    SigV4Auth(Credentials(KEY_ID, SECRET), "ecr", REGION).add_auth(req)
    return session.post(req.url, data=req.body, headers=dict(req.headers))


def test_source_ip_and_scheme_come_from_a_trusted_proxy_only(behind_nginx):
    berth, lb = behind_nginx
    ecr = berth.client()
    ecr.create_repository(repositoryName="edge")
    _, _, layer = push_image(berth, "edge", "v1", seed="proxy")
    key, secret = berth.create_user("puller", policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]})
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/puller"},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.2/32"}}}]}
    ecr.set_repository_policy(repositoryName="edge", policyText=json.dumps(policy))
    token = berth.token(key, secret)

    def pull(session, host, headers=None):
        return session.get(f"http://{host}/v2/edge/blobs/{layer}", auth=("AWS", token), headers=headers or {})

    # Through nginx, each client is itself.
    assert pull(session_from("127.0.0.2"), lb).status_code == 200
    denied = pull(session_from("127.0.0.3"), lb)
    assert denied.status_code == 403 and denied.json()["errors"][0]["code"] == "DENIED"
    # Straight to Berth, a client's own X-Forwarded-For is ignored.
    forged = pull(session_from("127.0.0.3"), berth.host, {"X-Forwarded-For": "127.0.0.2"})
    assert forged.status_code == 403
    # ...and so is one sent to nginx, which appends the real address after it.
    assert pull(session_from("127.0.0.3"), lb, {"X-Forwarded-For": "127.0.0.2"}).status_code == 403

    # The ECR API through nginx: the signature (over the Host nginx passes on) holds, and the
    # endpoint it names is the one the client used.
    r = ecr_call(session_from("127.0.0.2"), lb, "GetAuthorizationToken", {})
    assert r.status_code == 200, r.text
    assert r.json()["authorizationData"][0]["proxyEndpoint"] == f"http://{lb}"
    r = ecr_call(session_from("127.0.0.1"), berth.host, "GetAuthorizationToken", {}, {"X-Forwarded-Proto": "https"})
    assert r.json()["authorizationData"][0]["proxyEndpoint"] == f"https://{berth.host}", "a trusted proxy's TLS"
    r = ecr_call(session_from("127.0.0.2"), berth.host, "GetAuthorizationToken", {}, {"X-Forwarded-Proto": "https"})
    assert r.json()["authorizationData"][0]["proxyEndpoint"] == f"http://{berth.host}", "an untrusted claim"
    uri = ecr_call(session_from("127.0.0.2"), lb, "DescribeRepositories", {}).json()["repositories"][0]["repositoryUri"]
    assert uri == f"{lb}/edge"

    # Health for the load balancer.
    assert session_from("127.0.0.2").get(f"http://{lb}/healthz").status_code == 200
    ready = session_from("127.0.0.2").get(f"http://{lb}/readyz")
    assert ready.status_code == 200 and ready.text.startswith("ready")
