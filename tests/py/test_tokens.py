"""Registry tokens at the edges: an expired token (minted here with the registry's own key, read
from its database, so only the expiry is wrong) is refused, as is one for a deactivated key."""
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import time

import requests

from conftest import ACCOUNT_ID, KEY_ID, unseal, single_node

pytestmark = single_node("it reads the token key from the node's SQLite database")


def mint(key, claims):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    signed = "berth1." + b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    return signed + "." + b64(mac)


def registry_key(berth):
    """The token signing key, read from the database and opened with the master keyring."""
    data = os.path.join(berth.data_dir, "data")
    db = sqlite3.connect(os.path.join(data, "meta.db"))
    try:
        sealed = db.execute("SELECT value FROM registry_secrets WHERE name = 'registry-token-hmac'").fetchone()[0]
    finally:
        db.close()
    return unseal(data, "registry-secret", "registry-token-hmac", sealed)


def test_expired_and_revoked_tokens_are_refused(berth):
    key = registry_key(berth)
    url = f"{berth.endpoint}/v2/_catalog"
    now = int(time.time())
    claims = {"a": ACCOUNT_ID, "p": ACCOUNT_ID, "k": KEY_ID, "e": now + 600}
    # The same construction with a future expiry is accepted: the test mints real tokens.
    assert requests.get(url, auth=("AWS", mint(key, claims))).status_code == 200
    expired = mint(key, dict(claims, e=now - 1))
    r = requests.get(url, auth=("AWS", expired))
    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    # A token naming a key that does not exist (or no longer does) is refused too.
    unknown = mint(key, dict(claims, k="AKIADOESNOTEXIST0000"))
    assert requests.get(url, auth=("AWS", unknown)).status_code == 401
    # A token for another principal than its key's is refused.
    other = mint(key, dict(claims, p="AIDASOMEONEELSE000000"))
    assert requests.get(url, auth=("AWS", other)).status_code == 401
