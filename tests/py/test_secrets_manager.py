"""The Secrets Manager API subset (the pull-through cache's credential store) through the real
AWS CLI and boto3: every operation, its errors, IAM authorization on secret ARNs, and values
sealed at rest."""

import base64
import json
import os
import sqlite3
import subprocess

import botocore.exceptions
import pytest

from conftest import ACCOUNT_ID, REGION, berth_bin, single_node, unseal


def sm(berth, *args, check=True):
    p = berth.aws("secretsmanager", *args, check=check)
    return json.loads(p.stdout) if check and p.stdout.strip() else p


def error_code(e):
    return e.value.response["Error"]["Code"]


def test_every_operation_through_the_aws_cli(berth, tmp_path):
    value = json.dumps({"username": "puller", "accessToken": "s3cr3t"})
    created = sm(berth, "create-secret", "--name", "ecr-pullthroughcache/hub", "--secret-string", value,
                 "--description", "Docker Hub", "--tags", "Key=team,Value=platform")
    arn = created["ARN"]
    prefix = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:ecr-pullthroughcache/hub-"
    assert arn.startswith(prefix) and len(arn) == len(prefix) + 6, arn
    assert created["Name"] == "ecr-pullthroughcache/hub" and created["VersionId"]

    # By name, full ARN and partial ARN (without the random suffix).
    for secret_id in ["ecr-pullthroughcache/hub", arn, prefix[:-1]]:
        got = sm(berth, "get-secret-value", "--secret-id", secret_id)
        assert got["SecretString"] == value and got["ARN"] == arn
        assert got["VersionStages"] == ["AWSCURRENT"] and got["VersionId"] == created["VersionId"]

    put = sm(berth, "put-secret-value", "--secret-id", arn, "--secret-string", "second")
    assert put["VersionStages"] == ["AWSCURRENT"]
    assert sm(berth, "get-secret-value", "--secret-id", arn)["SecretString"] == "second"
    previous = sm(berth, "get-secret-value", "--secret-id", arn, "--version-stage", "AWSPREVIOUS")
    assert previous["SecretString"] == value and previous["VersionId"] == created["VersionId"]
    by_id = sm(berth, "get-secret-value", "--secret-id", arn, "--version-id", put["VersionId"])
    assert by_id["SecretString"] == "second"

    described = sm(berth, "describe-secret", "--secret-id", arn)
    assert described["Description"] == "Docker Hub"
    assert described["Tags"] == [{"Key": "team", "Value": "platform"}]
    assert described["VersionIdsToStages"] == {created["VersionId"]: ["AWSPREVIOUS"], put["VersionId"]: ["AWSCURRENT"]}
    assert "LastAccessedDate" in described and "CreatedDate" in described

    updated = sm(berth, "update-secret", "--secret-id", arn, "--description", "hub creds", "--secret-string", "third")
    assert updated["ARN"] == arn and updated["VersionId"]
    assert sm(berth, "describe-secret", "--secret-id", arn)["Description"] == "hub creds"
    assert sm(berth, "get-secret-value", "--secret-id", arn)["SecretString"] == "third"

    (tmp_path / "bin").write_bytes(b"\x00\x01bytes")
    sm(berth, "create-secret", "--name", "bin", "--secret-binary", f"fileb://{tmp_path / 'bin'}")
    assert base64.b64decode(sm(berth, "get-secret-value", "--secret-id", "bin")["SecretBinary"]) == b"\x00\x01bytes"

    listed = sm(berth, "list-secrets")["SecretList"]
    assert [s["Name"] for s in listed] == ["ecr-pullthroughcache/hub", "bin"]
    assert listed[0]["SecretVersionsToStages"][updated["VersionId"]] == ["AWSCURRENT"]
    filtered = sm(berth, "list-secrets", "--filters", "Key=name,Values=ecr-pull")["SecretList"]
    assert [s["Name"] for s in filtered] == ["ecr-pullthroughcache/hub"]
    assert sm(berth, "list-secrets", "--filters", "Key=tag-value,Values=plat")["SecretList"][0]["ARN"] == arn

    deleted = sm(berth, "delete-secret", "--secret-id", arn, "--recovery-window-in-days", "7")
    assert deleted["ARN"] == arn and deleted["DeletionDate"]
    assert [s["Name"] for s in sm(berth, "list-secrets")["SecretList"]] == ["bin"]
    planned = sm(berth, "list-secrets", "--include-planned-deletion")["SecretList"]
    assert {s["Name"] for s in planned} == {"bin", "ecr-pullthroughcache/hub"}
    assert "DeletedDate" in sm(berth, "describe-secret", "--secret-id", arn)
    p = sm(berth, "get-secret-value", "--secret-id", arn, check=False)
    assert p.returncode != 0 and "InvalidRequestException" in p.stderr and "marked for deletion" in p.stderr
    assert sm(berth, "restore-secret", "--secret-id", arn) == {"ARN": arn, "Name": "ecr-pullthroughcache/hub"}
    assert sm(berth, "get-secret-value", "--secret-id", arn)["SecretString"] == "third"

    sm(berth, "delete-secret", "--secret-id", "bin", "--force-delete-without-recovery")
    p = sm(berth, "describe-secret", "--secret-id", "bin", check=False)
    assert "ResourceNotFoundException" in p.stderr, p.stderr
    # The name is free again at once.
    sm(berth, "create-secret", "--name", "bin", "--secret-string", "again")


def test_errors_are_the_ones_secrets_manager_names(berth):
    c = berth.client("secretsmanager")
    c.create_secret(Name="app", SecretString="v1")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_secret(Name="app", SecretString="v1")
    assert error_code(e) == "ResourceExistsException"
    assert "already exists" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_secret_value(SecretId="missing")
    assert error_code(e) == "ResourceNotFoundException"
    assert e.value.response["Error"]["Message"] == "Secrets Manager can't find the specified secret."
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_secret(Name="both", SecretString="a", SecretBinary=b"b")
    assert error_code(e) == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_secret(Name="bad name!", SecretString="a")
    assert error_code(e) == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_secret(SecretId="app", RecoveryWindowInDays=7, ForceDeleteWithoutRecovery=True)
    assert error_code(e) == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_secret(SecretId="app", RecoveryWindowInDays=6)
    assert error_code(e) == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_secret_value(SecretId="app", VersionStage="AWSPREVIOUS")
    assert error_code(e) == "ResourceNotFoundException"
    assert "staging label: AWSPREVIOUS" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_secret_value(SecretId="app")
    assert error_code(e) == "InvalidParameterException"

    # The same request token and value again is one version; another value under it is refused.
    token = "t" * 32
    first = c.put_secret_value(SecretId="app", SecretString="v2", ClientRequestToken=token)
    again = c.put_secret_value(SecretId="app", SecretString="v2", ClientRequestToken=token)
    assert first["VersionId"] == again["VersionId"] == token
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_secret_value(SecretId="app", SecretString="v3", ClientRequestToken=token)
    assert error_code(e) == "ResourceExistsException"

    c.delete_secret(SecretId="app")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_secret(Name="app", SecretString="v1")
    assert error_code(e) == "InvalidRequestException"
    assert "scheduled for deletion" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_secret(SecretId="app")
    assert error_code(e) == "InvalidRequestException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_secret_value(SecretId="app", SecretString="v4")
    assert error_code(e) == "InvalidRequestException"

    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.list_secrets(NextToken="garbage")
    assert error_code(e) == "InvalidNextTokenException"

    # Pages of one.
    for n in ["p1", "p2", "p3"]:
        c.create_secret(Name=n, SecretString="x")
    names, token = [], None
    while True:
        page = c.list_secrets(MaxResults=1, SortOrder="asc", **({"NextToken": token} if token else {}))
        names += [s["Name"] for s in page["SecretList"]]
        token = page.get("NextToken")
        if not token:
            break
    assert names == ["p1", "p2", "p3"]


def test_secrets_are_authorized_on_their_arns(berth):
    c = berth.client("secretsmanager")
    arn = c.create_secret(Name="ecr-pullthroughcache/team-a", SecretString="a")["ARN"]
    c.create_secret(Name="ecr-pullthroughcache/team-b", SecretString="b")
    key, secret = berth.create_user("reader", policy={
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:ecr-pullthroughcache/team-a-*",
        }],
    })
    reader = berth.client("secretsmanager", key=key, secret=secret)
    assert reader.get_secret_value(SecretId=arn)["SecretString"] == "a"
    assert reader.get_secret_value(SecretId="ecr-pullthroughcache/team-a")["SecretString"] == "a"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        reader.get_secret_value(SecretId="ecr-pullthroughcache/team-b")
    assert error_code(e) == "AccessDeniedException"
    assert "secretsmanager:GetSecretValue" in e.value.response["Error"]["Message"]
    for call in [lambda: reader.put_secret_value(SecretId=arn, SecretString="x"),
                 lambda: reader.list_secrets(),
                 lambda: reader.create_secret(Name="mine", SecretString="x")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == "AccessDeniedException"
    # A wrong signature is refused before anything else.
    bad = berth.client("secretsmanager", key=key, secret="wrong")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.get_secret_value(SecretId=arn)
    assert error_code(e) in ("InvalidSignatureException", "UnrecognizedClientException")


@single_node("it reads the node's SQLite database and rotates its master keyring")
def test_values_are_sealed_at_rest_and_resealed_by_a_master_key_rotation(berth):
    c = berth.client("secretsmanager")
    arn = c.create_secret(Name="sealed", SecretString="plain-text-value")["ARN"]
    version = c.get_secret_value(SecretId=arn)["VersionId"]
    data = os.path.join(berth.data_dir, "data")
    db = sqlite3.connect(os.path.join(data, "meta.db"))
    (stored,) = db.execute("SELECT sealed_value FROM managed_secret_versions WHERE secret_arn = ?", (arn,)).fetchone()
    db.close()
    assert "plain-text-value" not in stored
    assert unseal(data, "managed-secret-value", f"{arn}#{version}", stored) == b"Splain-text-value"

    def stored_value():
        db = sqlite3.connect(os.path.join(data, "meta.db"))
        (v,) = db.execute("SELECT sealed_value FROM managed_secret_versions WHERE secret_arn = ?", (arn,)).fetchone()
        db.close()
        return v

    p = subprocess.run([berth_bin(), "admin", "rotate-master-key", "--wait", "--data-dir", data],
                       capture_output=True, text=True, env=dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT_ID))
    assert p.returncode == 0, p.stderr
    # The rotation adds a keyring version and re-seals every value to it.
    lines = [line for line in open(os.path.join(data, "master.key")) if line.strip() and not line.startswith("#")]
    newest = max(int(line.split(":", 1)[0]) for line in lines)
    assert newest > 1 and stored_value().startswith(f"sealed:v{newest}:"), stored_value()[:12]
    assert c.get_secret_value(SecretId=arn)["SecretString"] == "plain-text-value"
