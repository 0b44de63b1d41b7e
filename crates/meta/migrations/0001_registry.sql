-- Core registry metadata. Portable SQL: BIGINT epoch-milliseconds for times, ON CONFLICT upserts.

CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- A blob's bytes are stored once per registry; repository_blobs says where it may be served.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE repository_blobs (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT NOT NULL REFERENCES blobs(digest),
    linked_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

-- Manifests keep the exact bytes received; they are served byte for byte.
CREATE TABLE manifests (
    repository_id  BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    size           BIGINT NOT NULL,
    content        BLOB NOT NULL,
    pushed_at      BIGINT NOT NULL,
    last_pulled_at BIGINT,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repository_id, subject);

-- What each manifest references: its blobs (config, layers) and, for an index, child manifests.
CREATE TABLE manifest_references (
    repository_id   BIGINT NOT NULL,
    manifest_digest TEXT NOT NULL,
    child_digest    TEXT NOT NULL,
    child_kind      TEXT NOT NULL CHECK (child_kind IN ('blob', 'manifest')),
    PRIMARY KEY (repository_id, manifest_digest, child_kind, child_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_child ON manifest_references(child_digest);

CREATE TABLE tags (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    tag           TEXT NOT NULL,
    digest        TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (repository_id, tag),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_digest ON tags(repository_id, digest);

CREATE TABLE uploads (
    id            TEXT PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    algorithm     TEXT NOT NULL,
    started_at    BIGINT NOT NULL
);
