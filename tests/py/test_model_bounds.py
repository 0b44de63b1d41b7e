"""Every ECR operation's input checked as the botocore model constrains it, against the real
binary: each string and list length bound and each integer range tried at the bound and one
past it, read from the model itself; required members, wrong types and forged pagination
tokens. boto3 runs with its own parameter validation off, so Berth is what decides."""
import base64
import re

import boto3
import botocore.session
import pytest
from botocore.config import Config

from conftest import ACCOUNT_ID, KEY_ID, REGION, SECRET

MODEL = botocore.session.get_session().get_service_model("ecr")

# Values for members whose pattern a repeated letter or digit does not satisfy.
SAMPLES = {
    "RegistryId": ACCOUNT_ID,
    "UploadId": "0b8a6b6c-7c4e-4f4e-9d1f-2f5e6a7b8c9d",
    "ImageDigest": "sha256:" + "a" * 64,
    "LayerDigest": "sha256:" + "a" * 64,
    "Arn": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/bounds",
    "SigningProfileArn": f"arn:aws:signer:{REGION}:{ACCOUNT_ID}:/signing-profiles/bounds",
    "PrincipalArn": f"arn:aws:iam::{ACCOUNT_ID}:user/bounds",
}


def raw_client(berth):
    return boto3.client(
        "ecr",
        endpoint_url=berth.endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )


def string_of(shape, length):
    """A string of `length` characters that satisfies the shape's pattern, or None."""
    pattern = shape.metadata.get("pattern")
    for c in "a1A":
        s = c * length
        if pattern is None or re.fullmatch(pattern, s):
            return s
    return None


def sample(shape):
    """A valid value for `shape`, or None when none can be made up."""
    if shape.name in SAMPLES:
        return SAMPLES[shape.name]
    t = shape.type_name
    if t == "string":
        if shape.enum:
            return shape.enum[0]
        return string_of(shape, max(shape.metadata.get("min", 0), min(8, shape.metadata.get("max", 8))))
    if t in ("integer", "long"):
        return shape.metadata.get("min", 1)
    if t == "boolean":
        return True
    if t == "blob":
        return b"x"
    if t == "timestamp":
        return 0
    if t == "map":
        return {}
    if t == "list":
        item = sample(shape.member)
        return None if item is None else [item] * max(1, shape.metadata.get("min", 1))
    if t == "structure":
        out = {}
        for name in shape.required_members:
            v = sample(shape.members[name])
            if v is None:
                return None
            out[name] = v
        return out
    return None


def bound_cases(shape):
    """(value, out_of_bounds) pairs at and past each bound of a member's shape."""
    t, meta = shape.type_name, shape.metadata
    cases = []
    if t == "string" and not shape.enum:
        for n, out in [(meta.get("max"), False), (meta.get("max", -2) + 1, True)] + (
            [(meta["min"], False), (meta["min"] - 1, True)] if meta.get("min", 0) > 0 else []
        ):
            if n is not None and n >= 0:
                # Past a bound, a value that still satisfies the pattern where one exists, so
                # the length itself is what is refused.
                s = string_of(shape, n) or ("a" * n if out else None)
                if s is not None:
                    cases.append((s, out))
    elif t == "list":
        item = sample(shape.member)
        if item is not None:
            if "max" in meta:
                cases += [([item] * meta["max"], False), ([item] * (meta["max"] + 1), True)]
            if meta.get("min", 0) > 0:
                cases += [([item] * meta["min"], False), ([item] * (meta["min"] - 1), True)]
    elif t in ("integer", "long"):
        if "max" in meta:
            cases += [(meta["max"], False), (meta["max"] + 1, True)]
        if "min" in meta:
            cases += [(meta["min"], False), (meta["min"] - 1, True)]
    return cases


def call(ecr, op, params):
    try:
        ecr._make_api_call(op, params)
        return None, ""
    except ecr.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"].get("Message", "")


def test_every_length_and_range_bound_of_every_operation(berth):
    ecr = raw_client(berth)
    ecr.create_repository(repositoryName="bounds")
    tried, failures = 0, []
    for op in MODEL.operation_names:
        input_shape = MODEL.operation_model(op).input_shape
        if input_shape is None:
            continue
        base = sample(input_shape)
        if base is None:
            continue
        for member, shape in input_shape.members.items():
            for value, out_of_bounds in bound_cases(shape):
                params = dict(base, **{member: value})
                code, message = call(ecr, op, params)
                tried += 1
                complaint = f"Invalid parameter at '{member}' failed to satisfy constraint: 'Member must have"
                if out_of_bounds and (code != "InvalidParameterException" or f"'{member}'" not in message):
                    failures.append(f"{op}.{member} = {str(value)[:40]!r}… (out of bounds): {code} {message[:160]}")
                if not out_of_bounds and code == "InvalidParameterException" and complaint in message:
                    failures.append(f"{op}.{member} at its bound refused: {message[:160]}")
    assert tried > 100, tried
    assert not failures, "\n".join(failures)


def test_required_members_wrong_types_and_paging(berth):
    ecr = raw_client(berth)
    code, message = call(ecr, "CreateRepository", {})
    assert code == "ValidationException"
    assert message == (
        "1 validation error detected: Value null at 'repositoryName' failed to satisfy constraint: "
        "Member must not be null"
    )
    assert call(ecr, "DescribeRepositories", {"maxResults": "ten"})[0] == "SerializationException"
    # (A string for a list is a unit test of the validator: botocore's serializer would split it.)
    assert call(ecr, "DescribeRepositories", {"maxResults": 2**63})[0] == "SerializationException"

    for i in range(3):
        ecr.create_repository(repositoryName=f"paged-{i}")
    # A token Berth never issued (base64 "zzz"), and a real one used for another listing.
    code, message = call(ecr, "DescribeRepositories", {"nextToken": base64.b64encode(b"zzz").decode()})
    assert code == "InvalidParameterException", message
    token = ecr.describe_repositories(maxResults=1)["nextToken"]
    assert len(ecr.describe_repositories(maxResults=1, nextToken=token)["repositories"]) == 1
    assert call(ecr, "DescribeRepositoryCreationTemplates", {"nextToken": token})[0] == "InvalidParameterException"
    assert call(ecr, "DescribeRepositories", {"nextToken": token[:-1] + ("0" if token[-1] != "0" else "1")})[0] == (
        "InvalidParameterException"
    )
    # Names and paging together.
    for params in [{"repositoryNames": ["paged-0"], "maxResults": 5}, {"repositoryNames": ["paged-0"], "nextToken": token}]:
        assert call(ecr, "DescribeRepositories", params)[0] == "InvalidParameterException", params
    ids = {"repositoryName": "paged-0", "imageIds": [{"imageTag": "v1"}], "maxResults": 5}
    assert call(ecr, "DescribeImages", ids)[0] == "InvalidParameterException"


def test_every_operation_of_the_model_is_served(berth):
    """botocore's ECR model, as installed: every operation reaches Berth's code (none answers
    UnknownOperationException)."""
    ecr = raw_client(berth)
    unserved = set()
    for op in MODEL.operation_names:
        # Input that passes the model's checks, so that the operation itself is reached.
        input_shape = MODEL.operation_model(op).input_shape
        params = (sample(input_shape) if input_shape is not None else None) or {}
        code, message = call(ecr, op, params)
        if code == "UnknownOperationException":
            unserved.add(op)
    assert len(MODEL.operation_names) >= 58
    assert not unserved, f"unserved: {sorted(unserved)}"
