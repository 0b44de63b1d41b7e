"""Pushes one file as an ORAS artifact whose subject is an existing manifest, with oras-py.

usage: oras_push.py REGISTRY TARGET SUBJECT_MEDIA_TYPE SUBJECT_DIGEST SUBJECT_SIZE FILE
Prints the pushed manifest's digest (the registry's Docker-Content-Digest)."""
import os
import sys

import oras.oci
import oras.provider

registry, target, media_type, digest, size, path = sys.argv[1:]
client = oras.provider.Registry(hostname=registry, insecure=True, auth_backend="basic")
client.auth.set_basic_auth("AWS", os.environ["BERTH_TOKEN"])
subject = oras.oci.Subject(mediaType=media_type, digest=digest, size=int(size))
os.chdir(os.path.dirname(os.path.abspath(path)))
response = client.push(target=target, files=[os.path.basename(path)], subject=subject, quiet=True)
if response.status_code != 201:
    sys.exit(f"push answered {response.status_code}: {response.text}")
print(response.headers["Docker-Content-Digest"])
