"""Registry and repository scanning configuration through the ECR API (the scan engine itself is
issue 6's): PutRegistryScanningConfiguration validated as the model says,
GetRegistryScanningConfiguration, and BatchGetRepositoryScanningConfiguration resolving each
repository's effective frequency from the registry rules and its own scanOnPush flag."""
import json

import pytest


def test_registry_and_repository_scanning_configuration(berth):
    ecr = berth.client()
    ecr.create_repository(repositoryName="prod-api")
    ecr.create_repository(repositoryName="dev-api", imageScanningConfiguration={"scanOnPush": True})
    ecr.create_repository(repositoryName="misc")

    # Default: BASIC, no rules; repositories follow their own flag.
    got = ecr.get_registry_scanning_configuration()
    assert got["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}
    conf = ecr.batch_get_repository_scanning_configuration(repositoryNames=["dev-api", "misc", "nope"])
    by_name = {c["repositoryName"]: c for c in conf["scanningConfigurations"]}
    assert (by_name["dev-api"]["scanOnPush"], by_name["dev-api"]["scanFrequency"]) == (True, "SCAN_ON_PUSH")
    assert (by_name["misc"]["scanOnPush"], by_name["misc"]["scanFrequency"]) == (False, "MANUAL")
    assert conf["failures"] == [{"repositoryName": "nope", "failureCode": "REPOSITORY_NOT_FOUND", "failureReason": "REPOSITORY_NOT_FOUND"}]

    rules = [
        {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "prod-*", "filterType": "WILDCARD"}]},
        {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]},
    ]
    out = json.loads(berth.aws("ecr", "put-registry-scanning-configuration", "--scan-type", "ENHANCED",
                               "--rules", json.dumps(rules)).stdout)
    assert out["registryScanningConfiguration"] == {"scanType": "ENHANCED", "rules": rules}
    assert ecr.get_registry_scanning_configuration()["scanningConfiguration"]["scanType"] == "ENHANCED"
    conf = ecr.batch_get_repository_scanning_configuration(repositoryNames=["prod-api", "misc"])
    by_name = {c["repositoryName"]: c for c in conf["scanningConfigurations"]}
    assert by_name["prod-api"]["scanFrequency"] == "CONTINUOUS_SCAN"
    assert by_name["prod-api"]["appliedScanFilters"] == [{"filter": "prod-*", "filterType": "WILDCARD"}]
    assert by_name["misc"]["scanFrequency"] == "SCAN_ON_PUSH" and by_name["misc"]["scanOnPush"] is True
    assert by_name["prod-api"]["repositoryArn"].endswith(":repository/prod-api")

    # CONTINUOUS_SCAN only with ENHANCED, as the model says; filters as the model's pattern.
    with pytest.raises(ecr.exceptions.InvalidParameterException) as e:
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
    assert "only available with scanType ENHANCED" in str(e.value)
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.put_registry_scanning_configuration(
            scanType="BASIC", rules=[{"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "Bad", "filterType": "WILDCARD"}]}])
    assert ecr.get_registry_scanning_configuration()["scanningConfiguration"]["scanType"] == "ENHANCED", "nothing stored"
