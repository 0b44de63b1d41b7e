"""Pull-time update exclusions (#18): RegisterPullTimeUpdateExclusion,
DeregisterPullTimeUpdateExclusion and ListPullTimeUpdateExclusions through the AWS CLI and boto3,
and what they are for: a pull by an excluded principal leaves lastRecordedPullTime alone, a pull
by anyone else moves it, and Berth's own scanner never does."""
import json
import time

import pytest
import requests
from conftest import ACCOUNT_ID, push_image

PULLER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}],
}


def cli_error(p):
    assert p.returncode != 0, p.stdout
    return p.stderr


def test_operations_and_errors_through_the_cli(berth):
    alice = f"arn:aws:iam::{ACCOUNT_ID}:user/alice"
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/scanner"
    before = time.time()
    out = json.loads(berth.aws("ecr", "register-pull-time-update-exclusion", "--principal-arn", alice).stdout)
    assert out["principalArn"] == alice
    assert before - 1 <= out["createdAt"] <= time.time() + 1
    # A role is kept (it matches nothing until Berth has roles); a user need not exist.
    berth.aws("ecr", "register-pull-time-update-exclusion", "--principal-arn", role)
    err = cli_error(berth.aws("ecr", "register-pull-time-update-exclusion", "--principal-arn", alice, check=False))
    assert "ExclusionAlreadyExistsException" in err and alice in err
    for bad in [f"arn:aws:iam::{ACCOUNT_ID}:root", f"arn:aws:iam::{ACCOUNT_ID}:group/devs", "alice"]:
        err = cli_error(berth.aws("ecr", "register-pull-time-update-exclusion", "--principal-arn", bad, check=False))
        assert "InvalidParameterException" in err or "ValidationException" in err, err

    listed = json.loads(berth.aws("ecr", "list-pull-time-update-exclusions").stdout)
    assert listed["pullTimeUpdateExclusions"] == [role, alice]
    # Pages: the CLI follows nextToken itself; one page by hand.
    page = berth.client().list_pull_time_update_exclusions(maxResults=1)
    assert page["pullTimeUpdateExclusions"] == [role] and page["nextToken"]
    rest = berth.client().list_pull_time_update_exclusions(maxResults=1, nextToken=page["nextToken"])
    assert rest["pullTimeUpdateExclusions"] == [alice] and "nextToken" not in rest

    out = json.loads(berth.aws("ecr", "deregister-pull-time-update-exclusion", "--principal-arn", alice).stdout)
    assert out == {"principalArn": alice}
    err = cli_error(berth.aws("ecr", "deregister-pull-time-update-exclusion", "--principal-arn", alice, check=False))
    assert "ExclusionNotFoundException" in err
    assert json.loads(berth.aws("ecr", "list-pull-time-update-exclusions").stdout)["pullTimeUpdateExclusions"] == [role]


def test_at_most_one_hundred_per_registry(berth):
    ecr = berth.client()
    for i in range(99):
        ecr.register_pull_time_update_exclusion(principalArn=f"arn:aws:iam::{ACCOUNT_ID}:user/u{i:03}")
    ecr.register_pull_time_update_exclusion(principalArn=f"arn:aws:iam::{ACCOUNT_ID}:role/last")
    err = cli_error(
        berth.aws("ecr", "register-pull-time-update-exclusion", "--principal-arn", f"arn:aws:iam::{ACCOUNT_ID}:user/extra", check=False)
    )
    assert "LimitExceededException" in err
    listed = json.loads(berth.aws("ecr", "list-pull-time-update-exclusions").stdout)["pullTimeUpdateExclusions"]
    assert len(listed) == 100


def test_a_user_without_permission_is_refused(berth):
    key = berth.create_user("viewer", policy={
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:Describe*", "Resource": "*"}],
    })
    ecr = berth.client(key=key[0], secret=key[1])
    with pytest.raises(ecr.exceptions.ClientError) as e:
        ecr.register_pull_time_update_exclusion(principalArn=f"arn:aws:iam::{ACCOUNT_ID}:user/viewer")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ecr:RegisterPullTimeUpdateExclusion" in e.value.response["Error"]["Message"]


def pulled_at(berth, repo, digest):
    detail = berth.client().describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])["imageDetails"][0]
    return detail.get("lastRecordedPullTime")


def pull(berth, repo, digest, key):
    token = berth.token(key=key[0], secret=key[1])
    r = requests.get(
        f"{berth.endpoint}/v2/{repo}/manifests/{digest}",
        auth=("AWS", token),
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 200, r.text


def wait_pulled(berth, repo, digest, after=None, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        at = pulled_at(berth, repo, digest)
        if at is not None and (after is None or at > after):
            return at
        time.sleep(0.2)
    raise AssertionError(f"no pull recorded for {repo}@{digest} after {after}")


def test_an_excluded_pull_leaves_the_pull_time_alone(berth):
    scanner = berth.create_user("scanner", policy=PULLER_POLICY)
    dev = berth.create_user("dev", policy=PULLER_POLICY)
    berth.aws("ecr", "create-repository", "--repository-name", "svc")
    digest, _, _ = push_image(berth, "svc", "v1", seed=1)
    berth.aws("ecr", "register-pull-time-update-exclusion", "--principal-arn", f"arn:aws:iam::{ACCOUNT_ID}:user/scanner")

    # The excluded user pulls over /v2/ and through BatchGetImage: nothing is recorded.
    pull(berth, "svc", digest, scanner)
    berth.client(key=scanner[0], secret=scanner[1]).batch_get_image(repositoryName="svc", imageIds=[{"imageTag": "v1"}])
    time.sleep(3)
    assert pulled_at(berth, "svc", digest) is None

    # Another user's pull is recorded.
    pull(berth, "svc", digest, dev)
    first = wait_pulled(berth, "svc", digest)

    # Later pulls by the excluded user still move nothing.
    time.sleep(1.1)
    pull(berth, "svc", digest, scanner)
    time.sleep(3)
    assert pulled_at(berth, "svc", digest) == first

    # Once deregistered, the same user's pulls count again (of another image: pulls of one
    # image by one principal are looked at once a minute).
    berth.aws("ecr", "deregister-pull-time-update-exclusion", "--principal-arn", f"arn:aws:iam::{ACCOUNT_ID}:user/scanner")
    other, _, _ = push_image(berth, "svc", "v2", seed=3)
    berth.client(key=scanner[0], secret=scanner[1]).batch_get_image(repositoryName="svc", imageIds=[{"imageTag": "v2"}])
    wait_pulled(berth, "svc", other)


def test_berths_own_scanner_never_records_a_pull(berth):
    berth.aws("ecr", "create-repository", "--repository-name", "scanned", "--image-scanning-configuration", "scanOnPush=true")
    digest, _, _ = push_image(berth, "scanned", "v1", seed=2)
    ecr = berth.client()
    deadline = time.time() + 60
    while True:
        detail = ecr.describe_images(repositoryName="scanned", imageIds=[{"imageDigest": digest}])["imageDetails"][0]
        status = detail.get("imageScanStatus", {}).get("status")
        if status not in (None, "IN_PROGRESS", "PENDING"):
            break
        assert time.time() < deadline, detail
        time.sleep(0.3)
    time.sleep(2)
    assert pulled_at(berth, "scanned", digest) is None
