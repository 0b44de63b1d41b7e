-- Image scanning: the vulnerability database (OSV records and an index from package to
-- record), and one scan row per image, which is also the scan queue.

CREATE TABLE vuln_records (
    id       TEXT PRIMARY KEY,
    modified TEXT NOT NULL,
    -- the record's OSV JSON, as imported
    record   TEXT NOT NULL
);

-- (ecosystem base name, package name as the ecosystem compares names) → record
CREATE TABLE vuln_packages (
    ecosystem TEXT NOT NULL,
    name      TEXT NOT NULL,
    record_id TEXT NOT NULL REFERENCES vuln_records(id) ON DELETE CASCADE,
    PRIMARY KEY (ecosystem, name, record_id)
) WITHOUT ROWID;
CREATE INDEX vuln_packages_record ON vuln_packages(record_id);

-- One row; version goes up with every import that changed something, which is what
-- continuous scanning watches.
CREATE TABLE vuln_db_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE image_scans (
    repository_id BIGINT NOT NULL,
    digest        TEXT NOT NULL,
    scan_type     TEXT NOT NULL CHECK (scan_type IN ('BASIC', 'ENHANCED')),
    status        TEXT NOT NULL
        CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETE', 'FAILED', 'UNSUPPORTED_IMAGE')),
    description   TEXT,
    -- bumped by every request; a worker's result is kept only if no newer request came
    generation    BIGINT NOT NULL,
    queued_at     BIGINT NOT NULL,
    claimed_by    TEXT,
    claimed_at    BIGINT,
    completed_at  BIGINT,
    -- vuln_db_state.version and updated_at the findings were computed against
    vulndb_version    BIGINT,
    vulndb_updated_at BIGINT,
    -- JSON: the findings, and the count per severity
    findings      TEXT,
    counts        TEXT,
    PRIMARY KEY (repository_id, digest),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX image_scans_queue ON image_scans(status, queued_at);

-- Pull policy: refuse pulls of images with findings at or above this severity.
ALTER TABLE repositories ADD COLUMN pull_block_severity TEXT;
