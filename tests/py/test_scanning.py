"""Image scanning end to end: images built here (Debian-like with dpkg, Alpine-like with apk,
Cargo.lock and Python dist-info), an OSV database of real records (tests/fixtures/osv) plus
Debian-shaped records written here, imported with `berth vulndb import`, pushed with scan on
push, and the findings read back with the AWS CLI and boto3. Also: StartImageScan and its
errors, enhanced findings, the SBOM referrer, scans that resume after a restart, continuous
rescans after a database import, and the pull policy refusing `docker pull`."""
import gzip
import hashlib
import io
import json
import os
import pathlib
import shutil
import tarfile
import tempfile
import time
import zipfile

import pytest
import requests

from conftest import Berth, single_node

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "osv"

CRITICAL_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MEDIUM_VECTOR = "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:H"  # 5.5


def debian_record(cve, package, fixed, release="12", vector=None):
    """A record in the shape of osv.dev's Debian records (DEBIAN-CVE-…, source package names)."""
    r = {
        "schema_version": "1.6.0",
        "id": f"DEBIAN-{cve}",
        "upstream": [cve],
        "modified": "2024-06-01T00:00:00Z",
        "published": "2024-05-01T00:00:00Z",
        "details": f"{package}: a vulnerability written by the Berth tests",
        "affected": [
            {
                "package": {"ecosystem": f"Debian:{release}", "name": package, "purl": f"pkg:deb/debian/{package}?arch=source"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
        "references": [{"type": "ADVISORY", "url": f"https://security-tracker.debian.org/tracker/{cve}"}],
    }
    if vector:
        r["severity"] = [{"type": "CVSS_V3", "score": vector}]
    return r


DEBIAN_RECORDS = [
    # openssl 3.0.11-1~deb12u1 is installed (as libssl3 and openssl): affected, CRITICAL.
    debian_record("CVE-2024-0001", "openssl", "3.0.13-1~deb12u1", vector=CRITICAL_VECTOR),
    # zlib 1:1.2.13.dfsg-1 is installed; fixed in an older version: nothing.
    debian_record("CVE-2024-0002", "zlib", "1:1.2.12-1", vector=CRITICAL_VECTOR),
    # curl is in a status.d file that a later layer deletes: nothing.
    debian_record("CVE-2024-0003", "curl", "8.0.0-1", vector=CRITICAL_VECTOR),
    # openssl again, but for Debian 11: nothing.
    debian_record("CVE-2024-0004", "openssl", "9.9.9-1", release="11", vector=CRITICAL_VECTOR),
    # tar (source of the binary of the same name): affected, MEDIUM.
    debian_record("CVE-2024-0005", "tar", "1.34+dfsg-1.2+deb12u1", vector=MEDIUM_VECTOR),
]


def tar_layer(files, compress=True):
    """A layer from {path: bytes} (bytes None = a whiteout file, written as given)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            data = data if isinstance(data, bytes) else (data or "").encode()
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return (gzip.compress(raw, mtime=0) if compress else raw), raw


class Pusher:
    """Pushes images built from layers over /v2/ with a registry token."""

    def __init__(self, berth):
        self.s = requests.Session()
        self.s.auth = ("AWS", berth.token())
        self.base = berth.endpoint

    def blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = self.s.post(f"{self.base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data)
        assert r.status_code == 201, r.text
        return {"digest": digest, "size": len(data)}

    def push(self, repo, tag, layers):
        """layers: list of {path: content}; returns (manifest digest, [layer digests])."""
        built = [tar_layer(files) for files in layers]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "author": "berth tests",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest() for _, raw in built]},
            "config": {},
        }
        cfg = self.blob(repo, json.dumps(config).encode())
        descs = [dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **self.blob(repo, gz)) for gz, _ in built]
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **cfg),
                "layers": descs,
            }
        ).encode()
        r = self.s.put(
            f"{self.base}/v2/{repo}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"], [d["digest"] for d in descs]


def dpkg(*packages):
    out = []
    for name, version, source in packages:
        p = f"Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n"
        if source:
            p += f"Source: {source}\n"
        out.append(p)
    return "\n".join(out)


DEBIAN_LAYERS = [
    {
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
        "var/lib/dpkg/status": dpkg(
            ("libssl3", "3.0.11-1~deb12u1", "openssl"),
            ("openssl", "3.0.11-1~deb12u1", None),
            ("zlib1g", "1:1.2.13.dfsg-1", "zlib"),
            ("tar", "1.34+dfsg-1.2", None),
        ),
        "var/lib/dpkg/status.d/curl": dpkg(("curl", "7.88.1-10", None)),
        "usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n",
    },
    # The second layer deletes curl's status file.
    {"var/lib/dpkg/status.d/.wh.curl": b"", "srv/app.txt": "hello"},
]

ALPINE_LANG_LAYERS = [
    {
        "etc/os-release": 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.11.2\n',
        "lib/apk/db/installed": "C:Q1abc=\nP:musl\nV:1.1.22-r3\nA:x86_64\no:musl\n\nP:zlib\nV:1.2.11-r3\nA:x86_64\no:zlib\n\n",
    },
    {
        "app/Cargo.lock": 'version = 3\n\n[[package]]\nname = "smallvec"\nversion = "0.6.9"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n\n[[package]]\nname = "app"\nversion = "0.1.0"\n',
        "usr/lib/python3.8/site-packages/requests-2.19.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n",
    },
]

ALPINE_LANG_FIXED = [
    {
        "etc/os-release": "ID=alpine\nVERSION_ID=3.11.6\n",
        "lib/apk/db/installed": "P:musl\nV:1.1.24-r3\no:musl\n\n",
        "app/Cargo.lock": 'version = 3\n\n[[package]]\nname = "smallvec"\nversion = "1.6.1"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n',
        "usr/lib/python3.8/site-packages/requests-2.31.0.dist-info/METADATA": "Name: requests\nVersion: 2.31.0\n",
    }
]


def write_debian_records(directory):
    d = pathlib.Path(directory) / "debian"
    d.mkdir(parents=True, exist_ok=True)
    for r in DEBIAN_RECORDS:
        (d / f"{r['id']}.json").write_text(json.dumps(r))
    return d


def import_db(berth, tmp_path):
    """Imports the fixture records (as a zip) and the Debian records (as a directory)."""
    z = tmp_path / "osv.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(FIXTURES.glob("*.json")):
            zf.write(f, f"osv/{f.name}")
    debian = write_debian_records(tmp_path)
    p = berth.cli("vulndb", "import", str(z), str(debian))
    state = json.loads(p.stdout)
    assert state["records"] == len(list(FIXTURES.glob("*.json"))) + len(DEBIAN_RECORDS)
    assert "records read" in p.stderr, p.stderr
    return state


def wait_complete(berth, repo, tag):
    berth.aws("ecr", "wait", "image-scan-complete", "--repository-name", repo, "--image-id", f"imageTag={tag}")
    return json.loads(berth.aws("ecr", "describe-image-scan-findings", "--repository-name", repo, "--image-id", f"imageTag={tag}").stdout)


def test_debian_image_basic_scan_on_push(berth, tmp_path):
    import_db(berth, tmp_path)
    # Re-importing the same data changes nothing (and the version stays).
    before = json.loads(berth.cli("vulndb", "status").stdout)
    again = json.loads(berth.cli("vulndb", "import", str(write_debian_records(tmp_path))).stdout)
    assert again["version"] == before["version"]

    berth.aws("ecr", "create-repository", "--repository-name", "deb", "--image-scanning-configuration", "scanOnPush=true")
    digest, layers = Pusher(berth).push("deb", "v1", DEBIAN_LAYERS)
    out = wait_complete(berth, "deb", "v1")
    assert out["imageScanStatus"]["status"] == "COMPLETE"
    findings = out["imageScanFindings"]
    got = sorted((f["name"], dict((a["key"], a["value"]) for a in f["attributes"])["package_name"], f["severity"]) for f in findings["findings"])
    # Exactly: openssl's CVE in both binaries of the source, tar's; not zlib (fixed), not curl
    # (whited out), not the Debian 11 record, not requests (BASIC scans OS packages only).
    assert got == [
        ("CVE-2024-0001", "libssl3", "CRITICAL"),
        ("CVE-2024-0001", "openssl", "CRITICAL"),
        ("CVE-2024-0005", "tar", "MEDIUM"),
    ]
    assert findings["findingSeverityCounts"] == {"CRITICAL": 2, "MEDIUM": 1}
    assert "enhancedFindings" not in findings
    first = next(f for f in findings["findings"] if f["name"] == "CVE-2024-0001")
    attrs = {a["key"]: a["value"] for a in first["attributes"]}
    assert attrs["package_version"] == "3.0.11-1~deb12u1"
    assert attrs["CVSS3_VECTOR"] == CRITICAL_VECTOR and attrs["CVSS3_SCORE"] == "9.8"
    assert first["uri"] == "https://osv.dev/vulnerability/DEBIAN-CVE-2024-0001"

    # DescribeImages shows the status and the counts.
    detail = berth.client().describe_images(repositoryName="deb", imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
    assert detail["imageScanStatus"]["status"] == "COMPLETE"
    assert detail["imageScanFindingsSummary"]["findingSeverityCounts"] == {"CRITICAL": 2, "MEDIUM": 1}

    # The SBOM is attached as a referrer: the OCI referrers API finds it, and it lists the packages.
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    index = s.get(f"{berth.endpoint}/v2/deb/referrers/{digest}").json()
    sboms = [m for m in index["manifests"] if m["artifactType"] == "application/vnd.cyclonedx+json"]
    assert len(sboms) == 1, index
    sbom_manifest = s.get(
        f"{berth.endpoint}/v2/deb/manifests/{sboms[0]['digest']}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    ).json()
    assert sbom_manifest["subject"]["digest"] == digest
    doc = s.get(f"{berth.endpoint}/v2/deb/blobs/{sbom_manifest['layers'][0]['digest']}").json()
    assert doc["bomFormat"] == "CycloneDX"
    purls = {c.get("purl") for c in doc["components"]}
    assert "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl" in purls
    assert not any(p and p.startswith("pkg:deb/debian/curl@") for p in purls), "curl was deleted"

    # Scanning again yields the same SBOM: still one referrer.
    berth.client().start_image_scan(repositoryName="deb", imageId={"imageTag": "v1"})
    wait_complete(berth, "deb", "v1")
    index = s.get(f"{berth.endpoint}/v2/deb/referrers/{digest}").json()
    assert len([m for m in index["manifests"] if m["artifactType"] == "application/vnd.cyclonedx+json"]) == 1

    # Deleting the image deletes its SBOM (and the scan).
    berth.client().batch_delete_image(repositoryName="deb", imageIds=[{"imageTag": "v1"}])
    assert berth.client().describe_images(repositoryName="deb")["imageDetails"] == []


def test_enhanced_scan_covers_language_packages(berth, tmp_path):
    import_db(berth, tmp_path)
    ecr = berth.client()
    ecr.put_registry_scanning_configuration(
        scanType="ENHANCED", rules=[{"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}]
    )
    ecr.create_repository(repositoryName="alp")
    pusher = Pusher(berth)
    digest, layers = pusher.push("alp", "vuln", ALPINE_LANG_LAYERS)
    pusher.push("alp", "fixed", ALPINE_LANG_FIXED)

    # The AWS CLI pages through the findings (two at a time here) and merges them.
    berth.aws("ecr", "wait", "image-scan-complete", "--repository-name", "alp", "--image-id", "imageTag=vuln")
    out = json.loads(
        berth.aws("ecr", "describe-image-scan-findings", "--repository-name", "alp", "--image-id", "imageTag=vuln", "--page-size", "2").stdout
    )
    enhanced = out["imageScanFindings"]["enhancedFindings"]
    got = sorted((f["packageVulnerabilityDetails"]["vulnerabilityId"], f["packageVulnerabilityDetails"]["vulnerablePackages"][0]["name"]) for f in enhanced)
    assert got == [
        ("CVE-2018-18074", "requests"),
        ("CVE-2018-25023", "smallvec"),
        ("CVE-2019-14697", "musl"),
        ("CVE-2019-15551", "smallvec"),
        ("CVE-2023-32681", "requests"),
    ]
    # RUSTSEC-2018-0018 is an informational ("unsound") advisory; the Alpine and PyPI records
    # carry no severity.
    assert out["imageScanFindings"]["findingSeverityCounts"] == {"CRITICAL": 1, "INFORMATIONAL": 1, "UNDEFINED": 3}
    by_id = {f["packageVulnerabilityDetails"]["vulnerabilityId"]: f for f in enhanced}
    smallvec = by_id["CVE-2019-15551"]
    pkg = smallvec["packageVulnerabilityDetails"]["vulnerablePackages"][0]
    assert pkg == {
        "name": "smallvec",
        "version": "0.6.9",
        "packageManager": "CARGO",
        "filePath": "/app/Cargo.lock",
        "sourceLayerHash": layers[1],
        "fixedInVersion": "0.6.10",
    }
    assert smallvec["severity"] == "CRITICAL" and smallvec["score"] == 9.8 and smallvec["fixAvailable"] == "YES"
    assert smallvec["type"] == "PACKAGE_VULNERABILITY" and smallvec["status"] == "ACTIVE"
    image = smallvec["resources"][0]["details"]["awsEcrContainerImage"]
    assert image["imageHash"] == digest and image["imageTags"] == ["vuln"] and image["architecture"] == "amd64"
    musl = by_id["CVE-2019-14697"]["packageVulnerabilityDetails"]["vulnerablePackages"][0]
    assert (musl["packageManager"], musl["fixedInVersion"], musl["sourceLayerHash"]) == ("OS", "1.1.23-r2", layers[0])

    # One page at a time with boto3: a nextToken, then the rest.
    page = ecr.describe_image_scan_findings(repositoryName="alp", imageId={"imageTag": "vuln"}, maxResults=3)
    assert len(page["imageScanFindings"]["enhancedFindings"]) == 3 and "nextToken" in page
    rest = ecr.describe_image_scan_findings(repositoryName="alp", imageId={"imageTag": "vuln"}, nextToken=page["nextToken"])
    assert len(rest["imageScanFindings"]["enhancedFindings"]) == 2 and "nextToken" not in rest

    # The same packages at fixed versions: a complete scan with nothing found.
    fixed = wait_complete(berth, "alp", "fixed")
    assert fixed["imageScanFindings"]["findingSeverityCounts"] == {}
    assert fixed["imageScanFindings"]["enhancedFindings"] == []


def rpm_header(name, version, release, epoch=None):
    """An rpm package header blob as the SQLite rpm database stores it (big-endian index of
    (tag, type, offset, count), then the data store)."""
    import struct

    entries, data = [], b""
    if epoch is not None:
        entries.append((1003, 4, len(data), 1))
        data += struct.pack(">I", epoch)
    for tag, value in ((1000, name), (1001, version), (1002, release), (1022, "x86_64")):
        entries.append((tag, 6, len(data), 1))
        data += value.encode() + b"\0"
    blob = struct.pack(">II", len(entries), len(data))
    for e in entries:
        blob += struct.pack(">IIII", *e)
    return blob + data


def rpmdb(packages):
    import sqlite3

    with tempfile.NamedTemporaryFile(suffix=".sqlite") as f:
        db = sqlite3.connect(f.name)
        db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        db.executemany("INSERT INTO Packages (blob) VALUES (?)", [(rpm_header(*p),) for p in packages])
        db.commit()
        db.close()
        return pathlib.Path(f.name).read_bytes()


def test_rpm_image_from_the_sqlite_database(berth, tmp_path):
    records = tmp_path / "rocky"
    records.mkdir()
    for rid, package, fixed in (("RLSA-2024:0001", "openssl-libs", "1:3.0.7-27.el9"), ("RLSA-2024:0002", "bash", "5.1.8-6.el9")):
        (records / f"{rid.replace(':', '-')}.json").write_text(json.dumps({
            "id": rid, "aliases": ["CVE-2024-1" + rid[-1]], "modified": "2024-06-01T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": CRITICAL_VECTOR}],
            "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": package},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
        }))
    berth.cli("vulndb", "import", str(records))
    berth.aws("ecr", "create-repository", "--repository-name", "rocky", "--image-scanning-configuration", "scanOnPush=true")
    Pusher(berth).push("rocky", "9", [{
        "etc/os-release": 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n',
        # openssl-libs is older than its fix; bash is exactly the fixed version.
        "var/lib/rpm/rpmdb.sqlite": rpmdb([("openssl-libs", "3.0.7", "24.el9", 1), ("bash", "5.1.8", "6.el9"), ("gpg-pubkey", "1", "1")]),
    }])
    out = wait_complete(berth, "rocky", "9")
    got = [(f["name"], {a["key"]: a["value"] for a in f["attributes"]}["package_version"]) for f in out["imageScanFindings"]["findings"]]
    assert got == [("CVE-2024-11", "1:3.0.7-24.el9")]

    # A known distribution whose package database Berth does not read (no rpmdb.sqlite: the
    # Berkeley DB of older releases) is reported unsupported, never as a clean image.
    Pusher(berth).push("rocky", "bdb", [{"etc/os-release": 'ID="rocky"\nVERSION_ID="8.9"\n', "var/lib/rpm/Packages": b"\0" * 64}])
    ecr = berth.client()
    deadline = time.time() + 60
    while True:
        status = ecr.describe_images(repositoryName="rocky", imageIds=[{"imageTag": "bdb"}])["imageDetails"][0]["imageScanStatus"]
        if status["status"] != "IN_PROGRESS":
            break
        assert time.time() < deadline, status
        time.sleep(0.5)
    assert status["status"] == "UNSUPPORTED_IMAGE", status


def test_start_image_scan_and_its_errors(berth, tmp_path):
    import_db(berth, tmp_path)
    ecr = berth.client()
    ecr.create_repository(repositoryName="manual")
    digest, _ = Pusher(berth).push("manual", "v1", DEBIAN_LAYERS)
    # No scan on push in this repository: no scan yet.
    p = berth.aws("ecr", "describe-image-scan-findings", "--repository-name", "manual", "--image-id", "imageTag=v1", check=False)
    assert p.returncode != 0 and "ScanNotFoundException" in p.stderr, p.stderr
    assert "imageScanStatus" not in ecr.describe_images(repositoryName="manual")["imageDetails"][0]

    started = json.loads(berth.aws("ecr", "start-image-scan", "--repository-name", "manual", "--image-id", "imageTag=v1").stdout)
    assert started["imageScanStatus"]["status"] == "IN_PROGRESS"
    assert started["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert wait_complete(berth, "manual", "v1")["imageScanFindings"]["findingSeverityCounts"] == {"CRITICAL": 2, "MEDIUM": 1}

    with pytest.raises(ecr.exceptions.ImageNotFoundException):
        ecr.start_image_scan(repositoryName="manual", imageId={"imageTag": "nope"})
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.start_image_scan(repositoryName="missing", imageId={"imageTag": "v1"})
    # An index is not scanned itself.
    s = requests.Session()
    s.auth = ("AWS", berth.token())
    manifest = s.get(f"{berth.endpoint}/v2/manual/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    r = s.put(f"{berth.endpoint}/v2/manual/manifests/multi", data=index, headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201, r.text
    with pytest.raises(ecr.exceptions.UnsupportedImageTypeException):
        ecr.start_image_scan(repositoryName="manual", imageId={"imageTag": "multi"})
    # An archived image must be restored first.
    other, _ = Pusher(berth).push("manual", "old", ALPINE_LANG_FIXED)
    ecr.update_image_storage_class(repositoryName="manual", imageId={"imageTag": "old"}, targetStorageClass="ARCHIVE")
    with pytest.raises(ecr.exceptions.ImageArchivedException):
        ecr.start_image_scan(repositoryName="manual", imageId={"imageTag": "old"})


@single_node("it restarts the server on its data directory")
def test_queued_scans_resume_after_a_restart(tmp_path):
    with tempfile.TemporaryDirectory() as d:
        # A node that only queues scans (concurrency 0), as a stand-in for one stopped mid-queue.
        b = Berth(d, extra_env={"BERTH_SCAN_CONCURRENCY": "0"})
        try:
            import_db(b, tmp_path)
            b.aws("ecr", "create-repository", "--repository-name", "later", "--image-scanning-configuration", "scanOnPush=true")
            Pusher(b).push("later", "v1", DEBIAN_LAYERS)
            time.sleep(1)
            status = b.client().describe_image_scan_findings(repositoryName="later", imageId={"imageTag": "v1"})["imageScanStatus"]
            assert status == {"status": "IN_PROGRESS", "description": "The scan is queued."}
        finally:
            b.stop()
        b = Berth(d)
        try:
            out = wait_complete(b, "later", "v1")
            assert out["imageScanFindings"]["findingSeverityCounts"] == {"CRITICAL": 2, "MEDIUM": 1}
        finally:
            b.stop()


def test_continuous_scan_reruns_when_the_database_changes(berth, tmp_path):
    ecr = berth.client()
    ecr.put_registry_scanning_configuration(
        scanType="ENHANCED", rules=[{"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "cont*", "filterType": "WILDCARD"}]}]
    )
    ecr.create_repository(repositoryName="cont")
    Pusher(berth).push("cont", "v1", ALPINE_LANG_LAYERS)
    # Nothing to match yet.
    first = wait_complete(berth, "cont", "v1")
    assert first["imageScanFindings"]["findingSeverityCounts"] == {}
    # A database import while the server runs: the image is scanned again on its own.
    only_rust = tmp_path / "rust"
    only_rust.mkdir()
    for f in FIXTURES.glob("RUSTSEC-*.json"):
        shutil.copy(f, only_rust)
    berth.cli("vulndb", "import", str(only_rust))
    deadline = time.time() + 90
    while True:
        out = ecr.describe_image_scan_findings(repositoryName="cont", imageId={"imageTag": "v1"})
        counts = out.get("imageScanFindings", {}).get("findingSeverityCounts", {})
        if counts:
            break
        assert time.time() < deadline, f"no rescan after the import: {out}"
        time.sleep(1)
    assert counts == {"CRITICAL": 1, "INFORMATIONAL": 1}


def test_pull_policy_refuses_docker_pull(berth, docker, tmp_path):
    import_db(berth, tmp_path)
    berth.aws("ecr", "create-repository", "--repository-name", "guarded", "--image-scanning-configuration", "scanOnPush=true")
    Pusher(berth).push("guarded", "v1", DEBIAN_LAYERS)
    wait_complete(berth, "guarded", "v1")
    out = berth.admin("set-pull-policy", "guarded", "HIGH")
    assert out["berthPullBlockSeverity"] == "HIGH"
    # An extra field of DescribeRepositories: botocore leaves it out of what it parses (and
    # does not fail on it), so read the raw response.
    ecr = berth.client()
    raw = {}
    ecr.meta.events.register("after-call.ecr.DescribeRepositories", lambda http_response, **_: raw.update(body=http_response.content))
    parsed = ecr.describe_repositories(repositoryNames=["guarded"])["repositories"][0]
    assert parsed["repositoryName"] == "guarded" and "berthPullBlockSeverity" not in parsed
    assert json.loads(raw["body"])["repositories"][0]["berthPullBlockSeverity"] == "HIGH"

    docker.run("login", "--username", "AWS", "--password-stdin", berth.host, stdin=berth.token())
    p = docker.run("pull", f"{berth.host}/guarded:v1", check=False)
    assert p.returncode != 0
    assert "denied" in p.stderr and "pull policy" in p.stderr and "2 CRITICAL" in p.stderr, p.stderr
    # BatchGetImage reports it as a failure.
    got = berth.client().batch_get_image(repositoryName="guarded", imageIds=[{"imageTag": "v1"}])
    assert got["images"] == [] and got["failures"][0]["failureCode"] == "ImageInaccessible"

    # CRITICAL findings are below no threshold; MEDIUM is below CRITICAL: still refused at CRITICAL.
    berth.admin("set-pull-policy", "guarded", "CRITICAL")
    assert docker.run("pull", f"{berth.host}/guarded:v1", check=False).returncode != 0
    berth.admin("set-pull-policy", "guarded", "NONE")
    docker.run("pull", f"{berth.host}/guarded:v1")
