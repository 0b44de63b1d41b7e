"""Pulls an ORAS artifact's files into a directory with oras-py.

usage: oras_pull.py REGISTRY TARGET OUTDIR"""
import os
import sys

import oras.provider

registry, target, outdir = sys.argv[1:]
client = oras.provider.Registry(hostname=registry, insecure=True, auth_backend="basic")
client.auth.set_basic_auth("AWS", os.environ["BERTH_TOKEN"])
for f in client.pull(target=target, outdir=outdir):
    print(f)
