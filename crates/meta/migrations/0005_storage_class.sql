-- ECR's archive storage class: archived images stay listed but are not pullable until restored
-- (UpdateImageStorageClass) or pushed again. And the record of what lifecycle runs did.

ALTER TABLE manifests ADD COLUMN storage_class TEXT NOT NULL DEFAULT 'STANDARD'
    CHECK (storage_class IN ('STANDARD', 'ARCHIVE'));
ALTER TABLE manifests ADD COLUMN last_archived_at BIGINT;
ALTER TABLE manifests ADD COLUMN last_activated_at BIGINT;

CREATE TABLE lifecycle_events (
    id            INTEGER PRIMARY KEY,
    repository    TEXT NOT NULL,
    digest        TEXT NOT NULL,
    -- JSON list of the tags the image had
    tags          TEXT NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('EXPIRE', 'TRANSITION')),
    rule_priority BIGINT NOT NULL,
    at            BIGINT NOT NULL
);
CREATE INDEX lifecycle_events_repository ON lifecycle_events(repository, at);
