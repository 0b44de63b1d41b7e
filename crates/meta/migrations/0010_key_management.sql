-- Key management: access-key secrets are stored sealed under the master keyring (the column
-- is renamed to say so; the upgrade seals what a previous release stored in plain text), the
-- last use of each key, the ids of deleted keys (a later start never brings one back), and the
-- master-key rotation in progress.
ALTER TABLE access_keys RENAME COLUMN secret TO sealed_secret;
ALTER TABLE access_keys ADD COLUMN last_used_at BIGINT;
ALTER TABLE access_keys ADD COLUMN last_used_service TEXT;
ALTER TABLE access_keys ADD COLUMN last_used_region TEXT;

CREATE TABLE deleted_access_keys (
    access_key_id TEXT PRIMARY KEY,
    principal_id  TEXT NOT NULL,
    deleted_at    BIGINT NOT NULL
);

CREATE TABLE master_key_rotation (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    target_version BIGINT NOT NULL,
    started_at     BIGINT NOT NULL
);
