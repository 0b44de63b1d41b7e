"""Berth's KMS through the real AWS CLI and boto3: every operation of the subset and its
errors, KMS's rule that the key policy must allow (even the root), grants, another account's
access by the key policy, and key material sealed at rest."""

import base64
import json
import sqlite3
import os

import botocore.exceptions
import pytest

from conftest import ACCOUNT_ID, REGION, single_node, unseal

OTHER_ACCOUNT = "987654321098"


def kms(berth, *args, check=True):
    p = berth.aws("kms", *args, check=check)
    return json.loads(p.stdout) if check and p.stdout.strip() else p


def refused(p, code):
    assert p.returncode != 0 and code in p.stderr, p.stderr
    return p.stderr


def error_code(e):
    return e.value.response["Error"]["Code"]


def unvalidated(berth):
    """A boto3 client that sends what it is given, so that Berth's own checks answer."""
    import boto3
    from botocore.config import Config

    from conftest import KEY_ID, SECRET

    return boto3.client("kms", endpoint_url=berth.endpoint, region_name=REGION, aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET, config=Config(parameter_validation=False))


def test_every_operation_through_the_aws_cli(berth, tmp_path):
    meta = kms(berth, "create-key", "--description", "app images")["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    assert arn == f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"
    assert meta["KeyState"] == "Enabled" and meta["Enabled"] and meta["KeyManager"] == "CUSTOMER"
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT" and meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["Description"] == "app images" and meta["AWSAccountId"] == ACCOUNT_ID

    policy = json.loads(kms(berth, "get-key-policy", "--key-id", key_id, "--policy-name", "default")["Policy"])
    assert policy["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    assert policy["Statement"][0]["Action"] == "kms:*"

    kms(berth, "create-alias", "--alias-name", "alias/app", "--target-key-id", key_id)
    for ref in [key_id, arn, "alias/app", f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/app"]:
        assert kms(berth, "describe-key", "--key-id", ref)["KeyMetadata"]["KeyId"] == key_id
    aliases = kms(berth, "list-aliases", "--key-id", key_id)["Aliases"]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in aliases] == [("alias/app", key_id)]
    assert aliases[0]["AliasArn"] == f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/app"
    assert [k["KeyId"] for k in kms(berth, "list-keys")["Keys"]] == [key_id]

    (tmp_path / "plain").write_bytes(b"layer key \x00\x01")
    enc = kms(berth, "encrypt", "--key-id", "alias/app", "--plaintext", f"fileb://{tmp_path / 'plain'}",
              "--encryption-context", "repo=app")
    assert enc["KeyId"] == arn and enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    (tmp_path / "ct").write_bytes(base64.b64decode(enc["CiphertextBlob"]))
    dec = kms(berth, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'ct'}", "--encryption-context", "repo=app")
    assert base64.b64decode(dec["Plaintext"]) == b"layer key \x00\x01" and dec["KeyId"] == arn
    refused(kms(berth, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'ct'}", check=False),
            "InvalidCiphertextException")

    data = kms(berth, "generate-data-key", "--key-id", key_id, "--key-spec", "AES_256")
    assert len(base64.b64decode(data["Plaintext"])) == 32 and data["KeyId"] == arn
    assert data["KeyMaterialId"] == meta["CurrentKeyMaterialId"]
    assert len(base64.b64decode(kms(berth, "generate-data-key", "--key-id", key_id,
                                    "--number-of-bytes", "64")["Plaintext"])) == 64

    # Rotation: on demand and automatic; old ciphertexts still open, nothing re-encrypted.
    status = kms(berth, "get-key-rotation-status", "--key-id", key_id)
    assert status["KeyRotationEnabled"] is False
    kms(berth, "enable-key-rotation", "--key-id", key_id, "--rotation-period-in-days", "90")
    status = kms(berth, "get-key-rotation-status", "--key-id", key_id)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 90 and "NextRotationDate" in status
    assert kms(berth, "rotate-key-on-demand", "--key-id", key_id)["KeyId"] == arn
    rotations = kms(berth, "list-key-rotations", "--key-id", key_id)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
    assert len(kms(berth, "list-key-rotations", "--key-id", key_id, "--include-key-material", "ALL_KEY_MATERIAL")["Rotations"]) == 2
    after = kms(berth, "describe-key", "--key-id", key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert after == rotations[0]["KeyMaterialId"] != meta["CurrentKeyMaterialId"]
    dec = kms(berth, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'ct'}", "--encryption-context", "repo=app")
    assert dec["KeyMaterialId"] == meta["CurrentKeyMaterialId"]
    kms(berth, "disable-key-rotation", "--key-id", key_id)
    assert kms(berth, "get-key-rotation-status", "--key-id", key_id)["KeyRotationEnabled"] is False

    # Grants.
    grant = kms(berth, "create-grant", "--key-id", key_id, "--name", "ecr",
                "--grantee-principal", f"arn:aws:iam::{ACCOUNT_ID}:user/puller",
                "--retiring-principal", f"arn:aws:iam::{ACCOUNT_ID}:root",
                "--operations", "Decrypt", "DescribeKey", "--constraints", "EncryptionContextSubset={repo=app}")
    grants = kms(berth, "list-grants", "--key-id", key_id)["Grants"]
    assert [g["GrantId"] for g in grants] == [grant["GrantId"]]
    assert grants[0]["Operations"] == ["Decrypt", "DescribeKey"]
    assert grants[0]["Constraints"] == {"EncryptionContextSubset": {"repo": "app"}}
    assert grants[0]["Name"] == "ecr" and grants[0]["IssuingAccount"] == f"arn:aws:iam::{ACCOUNT_ID}:root"
    kms(berth, "retire-grant", "--grant-token", grant["GrantToken"])
    assert kms(berth, "list-grants", "--key-id", key_id)["Grants"] == []
    second = kms(berth, "create-grant", "--key-id", key_id, "--grantee-principal",
                 f"arn:aws:iam::{ACCOUNT_ID}:user/puller", "--operations", "Encrypt")
    kms(berth, "revoke-grant", "--key-id", key_id, "--grant-id", second["GrantId"])
    assert kms(berth, "list-grants", "--key-id", key_id)["Grants"] == []

    # The key policy, replaced.
    new_policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "other", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
         "Action": "kms:Decrypt", "Resource": "*"}]}
    kms(berth, "put-key-policy", "--key-id", key_id, "--policy-name", "default", "--policy", json.dumps(new_policy))
    assert json.loads(kms(berth, "get-key-policy", "--key-id", key_id)["Policy"]) == new_policy

    # Life cycle.
    kms(berth, "disable-key", "--key-id", key_id)
    assert kms(berth, "describe-key", "--key-id", key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    refused(kms(berth, "encrypt", "--key-id", key_id, "--plaintext", f"fileb://{tmp_path / 'plain'}", check=False),
            "DisabledException")
    kms(berth, "enable-key", "--key-id", key_id)
    scheduled = kms(berth, "schedule-key-deletion", "--key-id", key_id, "--pending-window-in-days", "7")
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7
    assert scheduled["KeyId"] == arn and scheduled["DeletionDate"]
    described = kms(berth, "describe-key", "--key-id", key_id)["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion" and described["PendingDeletionWindowInDays"] == 7
    refused(kms(berth, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'ct'}", "--encryption-context",
                "repo=app", check=False), "KMSInvalidStateException")
    assert kms(berth, "cancel-key-deletion", "--key-id", key_id)["KeyId"] == arn
    assert kms(berth, "describe-key", "--key-id", key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    kms(berth, "enable-key", "--key-id", key_id)
    kms(berth, "delete-alias", "--alias-name", "alias/app")
    assert kms(berth, "list-aliases")["Aliases"] == []


def test_errors_are_the_ones_kms_names(berth):
    c = unvalidated(berth)
    key = c.create_key()["KeyMetadata"]
    key_id = key["KeyId"]
    missing = "11111111-2222-3333-4444-555555555555"
    for call, code in [
        (lambda: c.describe_key(KeyId=missing), "NotFoundException"),
        (lambda: c.describe_key(KeyId="alias/none"), "NotFoundException"),
        (lambda: c.describe_key(KeyId="not a key"), "NotFoundException"),
        (lambda: c.create_key(KeySpec="RSA_2048"), "UnsupportedOperationException"),
        (lambda: c.create_key(Policy="{not json"), "MalformedPolicyDocumentException"),
        (lambda: c.create_alias(AliasName="alias/aws/mine", TargetKeyId=key_id), "InvalidAliasNameException"),
        (lambda: c.create_alias(AliasName="noprefix", TargetKeyId=key_id), "ValidationException"),
        (lambda: c.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=6), "ValidationException"),
        (lambda: c.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=31), "ValidationException"),
        (lambda: c.cancel_key_deletion(KeyId=key_id), "KMSInvalidStateException"),
        (lambda: c.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=30), "ValidationException"),
        (lambda: c.encrypt(KeyId=key_id, Plaintext=b""), "ValidationException"),
        (lambda: c.encrypt(KeyId=key_id, Plaintext=b"x" * 4097), "ValidationException"),
        (lambda: c.generate_data_key(KeyId=key_id), "ValidationException"),
        (lambda: c.generate_data_key(KeyId=key_id, NumberOfBytes=32, KeySpec="AES_256"), "ValidationException"),
        (lambda: c.decrypt(CiphertextBlob=b"not a ciphertext blob at all, no"), "InvalidCiphertextException"),
        (lambda: c.create_grant(KeyId=key_id, GranteePrincipal="x", Operations=["Sign"]), "ValidationException"),
        (lambda: c.revoke_grant(KeyId=key_id, GrantId="0" * 64), "NotFoundException"),
        (lambda: c.retire_grant(GrantToken="garbage"), "InvalidGrantTokenException"),
        (lambda: c.list_keys(Limit=0), "ValidationException"),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == code, (code, e.value.response)
    c.create_alias(AliasName="alias/app", TargetKeyId=key_id)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_alias(AliasName="alias/app", TargetKeyId=key_id)
    assert error_code(e) == "AlreadyExistsException"
    assert "alias/app already exists" in e.value.response["Error"]["Message"]

    blob = c.encrypt(KeyId=key_id, Plaintext=b"v")["CiphertextBlob"]
    other = c.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.decrypt(CiphertextBlob=blob, KeyId=other)
    assert error_code(e) == "IncorrectKeyException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.encrypt(KeyId=key_id, Plaintext=b"v", DryRun=True)
    assert error_code(e) == "DryRunOperationException"

    # A policy that would lock the caller out is refused unless the check is bypassed.
    lockout = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/someone"},
         "Action": "kms:*", "Resource": "*"}]})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_key_policy(KeyId=key_id, PolicyName="default", Policy=lockout)
    assert error_code(e) == "MalformedPolicyDocumentException"
    c.put_key_policy(KeyId=key_id, PolicyName="default", Policy=lockout, BypassPolicyLockoutSafetyCheck=True)
    # Now not even the account's root may use or manage the key: the key policy must allow.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.decrypt(CiphertextBlob=blob)
    assert error_code(e) == "AccessDeniedException"
    assert f"kms:Decrypt on resource: {key['Arn']}" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.schedule_key_deletion(KeyId=key_id)
    assert error_code(e) == "AccessDeniedException"

    # Pages of one.
    ids, marker = [], None
    while True:
        page = c.list_keys(Limit=1, **({"Marker": marker} if marker else {}))
        ids += [k["KeyId"] for k in page["Keys"]]
        marker = page.get("NextMarker")
        assert page["Truncated"] == bool(marker)
        if not marker:
            break
    assert sorted(ids) == sorted([key_id, other])


def test_the_ecr_managed_key_is_made_on_first_use_and_only_ecr_may_use_it(berth):
    c = berth.client("kms")
    meta = c.describe_key(KeyId="alias/aws/ecr")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS" and meta["KeyState"] == "Enabled"
    assert c.describe_key(KeyId="alias/aws/ecr")["KeyMetadata"]["KeyId"] == meta["KeyId"], "made once"
    assert [a["AliasName"] for a in c.list_aliases()["Aliases"]] == ["alias/aws/ecr"]
    assert c.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"] is True
    for call in [
        lambda: c.encrypt(KeyId="alias/aws/ecr", Plaintext=b"v"),
        lambda: c.disable_key(KeyId=meta["KeyId"]),
        lambda: c.schedule_key_deletion(KeyId=meta["KeyId"]),
        lambda: c.put_key_policy(KeyId=meta["KeyId"], PolicyName="default", Policy="{}"),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == "AccessDeniedException", e.value.response
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_alias(AliasName="alias/aws/ecr")
    assert error_code(e) in ("ValidationException", "AccessDeniedException")


def test_iam_policies_grants_and_another_account(berth):
    root = berth.client("kms")
    key = root.create_key()["KeyMetadata"]
    blob = root.encrypt(KeyId=key["KeyId"], Plaintext=b"v", EncryptionContext={"repo": "app"})["CiphertextBlob"]

    # The default key policy delegates to IAM: a user with kms:Decrypt in an IAM policy may,
    # one without may not — unless a grant names it.
    reader = berth.client("kms", *berth.create_user("reader", policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": key["Arn"]}]}))
    assert reader.decrypt(CiphertextBlob=blob, EncryptionContext={"repo": "app"})["Plaintext"] == b"v"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        reader.encrypt(KeyId=key["KeyId"], Plaintext=b"v")
    assert error_code(e) == "AccessDeniedException"
    plain = berth.client("kms", *berth.create_user("plain"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        plain.decrypt(CiphertextBlob=blob, EncryptionContext={"repo": "app"})
    assert error_code(e) == "AccessDeniedException"
    root.create_grant(KeyId=key["KeyId"], GranteePrincipal=f"arn:aws:iam::{ACCOUNT_ID}:user/plain",
                      Operations=["Decrypt"], Constraints={"EncryptionContextEquals": {"repo": "app"}})
    assert plain.decrypt(CiphertextBlob=blob, EncryptionContext={"repo": "app"})["Plaintext"] == b"v"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        plain.decrypt(CiphertextBlob=root.encrypt(KeyId=key["KeyId"], Plaintext=b"v")["CiphertextBlob"])
    assert error_code(e) == "AccessDeniedException", "the grant's constraint holds"

    # Another account's root: refused until the key policy names it, by the key's ARN only.
    b = berth.admin("create-account", OTHER_ACCOUNT)["AccessKey"]
    other = berth.client("kms", key=b["AccessKeyId"], secret=b["SecretAccessKey"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        other.decrypt(CiphertextBlob=blob, EncryptionContext={"repo": "app"})
    assert error_code(e) == "AccessDeniedException"
    assert f"arn:aws:iam::{OTHER_ACCOUNT}:root is not authorized to perform: kms:Decrypt on resource: {key['Arn']}" \
        in e.value.response["Error"]["Message"]
    policy = json.loads(root.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    policy["Statement"].append({"Sid": "B decrypts", "Effect": "Allow",
                                "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
                                "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"})
    root.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(policy))
    assert other.decrypt(CiphertextBlob=blob, EncryptionContext={"repo": "app"})["Plaintext"] == b"v"
    assert other.describe_key(KeyId=key["Arn"])["KeyMetadata"]["KeyId"] == key["KeyId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        other.describe_key(KeyId=key["KeyId"])
    assert error_code(e) == "NotFoundException", "another account's key is named by its ARN"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        other.encrypt(KeyId=key["Arn"], Plaintext=b"v")
    assert error_code(e) == "AccessDeniedException"
    assert other.list_keys()["Keys"] == []


@single_node("reads the SQLite file of the one node")
def test_key_material_is_sealed_under_the_master_keyring(berth):
    c = berth.client("kms")
    key_id = c.create_key()["KeyMetadata"]["KeyId"]
    c.rotate_key_on_demand(KeyId=key_id)
    db = sqlite3.connect(os.path.join(berth.data_dir, "data", "meta.db"))
    rows = db.execute("SELECT material_id, sealed_material FROM kms_key_materials WHERE key_id = ?", (key_id,)).fetchall()
    db.close()
    assert len(rows) == 2
    for material_id, sealed in rows:
        assert sealed.startswith("sealed:v")
        assert len(unseal(os.path.join(berth.data_dir, "data"), "kms-key-material", f"{key_id}/{material_id}", sealed)) == 32


def test_create_repository_with_a_kms_key_grants_ecr_its_use(berth):
    k, ecr = berth.client("kms"), berth.client()
    key = k.create_key(Description="repos")["KeyMetadata"]
    k.create_alias(AliasName="alias/repos", TargetKeyId=key["KeyId"])

    p = berth.aws("ecr", "create-repository", "--repository-name", "enc",
                  "--encryption-configuration", "encryptionType=KMS,kmsKey=alias/repos")
    created = json.loads(p.stdout)["repository"]
    assert created["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key["Arn"]}, "the key's ARN"
    described = ecr.describe_repositories(repositoryNames=["enc"])["repositories"][0]
    assert described["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key["Arn"]}
    grants = k.list_grants(KeyId=key["KeyId"])["Grants"]
    assert len(grants) == 1 and grants[0]["GranteePrincipal"] == f"ecr.{REGION}.amazonaws.com"
    assert {"Decrypt", "GenerateDataKey", "DescribeKey"} <= set(grants[0]["Operations"])

    # The same name again: refused, and no second grant.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.create_repository(repositoryName="enc", encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key["Arn"]})
    assert error_code(e) == "RepositoryAlreadyExistsException"
    assert len(k.list_grants(KeyId=key["KeyId"])["Grants"]) == 1

    dsse = ecr.create_repository(repositoryName="dsse", encryptionConfiguration={
        "encryptionType": "KMS_DSSE", "kmsKey": key["KeyId"]})["repository"]
    assert dsse["encryptionConfiguration"] == {"encryptionType": "KMS_DSSE", "kmsKey": key["Arn"]}
    assert len(k.list_grants(KeyId=key["KeyId"])["Grants"]) == 2

    ecr.delete_repository(repositoryName="enc")
    ecr.delete_repository(repositoryName="dsse")
    assert k.list_grants(KeyId=key["KeyId"])["Grants"] == [], "DeleteRepository retires ECR's grants"

    # KMS without a key: the account's AWS-managed alias/aws/ecr, made on first use.
    default = ecr.create_repository(repositoryName="default-key", encryptionConfiguration={"encryptionType": "KMS"})
    managed = k.describe_key(KeyId="alias/aws/ecr")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    assert default["repository"]["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": managed["Arn"]}
    plain = ecr.create_repository(repositoryName="plain")["repository"]
    assert plain["encryptionConfiguration"] == {"encryptionType": "AES256"}


def kms_exception(e):
    assert error_code(e) == "KmsException", e.value.response
    return e.value.response.get("kmsError")


def test_create_repository_refuses_with_kms_exception(berth):
    k, ecr = berth.client("kms"), berth.client()
    key = k.create_key()["KeyMetadata"]

    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.create_repository(repositoryName="app-a", encryptionConfiguration={
            "encryptionType": "KMS", "kmsKey": "alias/none"})
    assert kms_exception(e) == "NotFoundException"
    k.disable_key(KeyId=key["KeyId"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.create_repository(repositoryName="app-a", encryptionConfiguration={
            "encryptionType": "KMS", "kmsKey": key["KeyId"]})
    assert kms_exception(e) == "DisabledException"
    assert key["Arn"] in e.value.response["Error"]["Message"]
    k.enable_key(KeyId=key["KeyId"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.create_repository(repositoryName="app-a", encryptionConfiguration={
            "encryptionType": "AES256", "kmsKey": key["KeyId"]})
    assert error_code(e) == "InvalidParameterException"

    # The creator needs kms:DescribeKey, kms:CreateGrant and kms:RetireGrant on the key.
    ecr_only = {"Effect": "Allow", "Action": ["ecr:CreateRepository", "ecr:DescribeRepositories"], "Resource": "*"}
    no_grant = berth.client("ecr", *berth.create_user("no-grant", policy={"Version": "2012-10-17", "Statement": [
        ecr_only, {"Effect": "Allow", "Action": ["kms:DescribeKey", "kms:RetireGrant"], "Resource": key["Arn"]}]}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        no_grant.create_repository(repositoryName="app-a", encryptionConfiguration={
            "encryptionType": "KMS", "kmsKey": key["Arn"]})
    assert kms_exception(e) == "AccessDeniedException"
    assert "kms:CreateGrant" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.describe_repositories(repositoryNames=["app-a"])
    assert error_code(e) == "RepositoryNotFoundException", "nothing was created"
    assert k.list_grants(KeyId=key["KeyId"])["Grants"] == []

    granting = berth.client("ecr", *berth.create_user("granting", policy={"Version": "2012-10-17", "Statement": [
        ecr_only, {"Effect": "Allow", "Action": ["kms:DescribeKey", "kms:CreateGrant", "kms:RetireGrant"],
                   "Resource": key["Arn"]}]}))
    made = granting.create_repository(repositoryName="app-a", encryptionConfiguration={
        "encryptionType": "KMS", "kmsKey": key["Arn"]})["repository"]
    assert made["encryptionConfiguration"]["kmsKey"] == key["Arn"]

    # The AWS-managed key lets the account's principals use it through ECR without any kms:
    # permission of their own.
    assert no_grant.create_repository(repositoryName="app-b", encryptionConfiguration={"encryptionType": "KMS"})


def test_a_creation_template_with_a_kms_key_makes_encrypted_repositories(berth):
    from conftest import push_image

    k, ecr = berth.client("kms"), berth.client()
    key = k.create_key()["KeyMetadata"]
    ecr.create_repository_creation_template(
        prefix="sealed", appliedFor=["CREATE_ON_PUSH"],
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key["Arn"]})
    push_image(berth, "sealed/app", "v1", seed=1)
    repo = ecr.describe_repositories(repositoryNames=["sealed/app"])["repositories"][0]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key["Arn"]}
    grants = k.list_grants(KeyId=key["KeyId"])["Grants"]
    assert [g["GranteePrincipal"] for g in grants] == [f"ecr.{REGION}.amazonaws.com"]

    # A template's key that cannot be used: the push that would create the repository is refused.
    k.disable_key(KeyId=key["KeyId"])
    import requests

    r = requests.post(f"{berth.endpoint}/v2/sealed/other/blobs/uploads/", auth=("AWS", berth.token()))
    assert r.status_code == 403, r.text
    body = r.json()["errors"][0]
    assert body["code"] == "DENIED" and key["Arn"] in body["message"], body
    assert body["detail"] == {"kmsError": "DisabledException"}
