"""Every exception the ECR API surface can answer with is one the botocore models define (ECR's,
and ECR Public's for its operations), so boto3 raises its modelled class, or one of the AWS-wide
authentication and protocol errors, or one of Berth's own target's (which no model can know)."""
import gzip
import json
import os
import pathlib
import re

import botocore

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Errors every AWS JSON service may answer with, outside any one service model.
COMMON = {
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "SerializationException",
    "UnknownOperationException",
    "AccessDeniedException",
}
# Errors of Berth's own operations (berth.rs, target Berth_20261201).
BERTH_OWN = {"PullVerificationNotFoundException"}


def model(service="ecr", version="2015-09-21"):
    path = os.path.join(os.path.dirname(botocore.__file__), f"data/{service}/{version}/service-2.json.gz")
    return json.load(gzip.open(path))


def test_every_emitted_exception_is_modelled_or_common():
    modelled = {
        name
        for m in (model(), model("ecr-public", "2020-10-30"))
        for name, shape in m["shapes"].items()
        if shape.get("exception")
    }
    sources = list((ROOT / "crates/server/src/http/ecr").glob("*.rs")) + [ROOT / "crates/registry/src/identity.rs"]
    emitted = set()
    for src in sources:
        emitted |= set(re.findall(r'"([A-Z][A-Za-z]+Exception)"', src.read_text()))
    assert len(emitted) > 20, emitted
    unknown = emitted - modelled - COMMON - BERTH_OWN
    assert not unknown, f"not in the botocore model: {sorted(unknown)}"


def test_every_served_operation_is_in_the_model():
    m = model()
    text = (ROOT / "crates/server/src/http/ecr/mod.rs").read_text()
    served = {op for op in re.findall(r'^\s+"([A-Z][A-Za-z]+)" =>', text, re.M) if not op.endswith("Exception")}
    assert len(served) >= 27, served
    assert served <= set(m["operations"]), sorted(served - set(m["operations"]))
