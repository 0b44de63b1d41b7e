-- Secrets Manager's secrets (the pull-through cache's upstream credentials among them): their
-- metadata, and each version's value sealed under the master keyring (bound to `id`, which is
-- `<arn>#<version id>`) with its staging labels (a JSON array: AWSCURRENT, AWSPREVIOUS, …).
CREATE TABLE managed_secrets (
    arn TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    kms_key_id TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    changed_at BIGINT NOT NULL,
    accessed_at BIGINT,
    -- When a scheduled deletion takes effect (ms since the epoch); NULL when none is scheduled.
    deletion_date BIGINT,
    UNIQUE (account_id, name)
);

CREATE TABLE managed_secret_versions (
    id TEXT PRIMARY KEY,
    secret_arn TEXT NOT NULL REFERENCES managed_secrets (arn) ON DELETE CASCADE,
    version_id TEXT NOT NULL,
    sealed_value TEXT NOT NULL,
    stages TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX managed_secret_versions_by_secret ON managed_secret_versions (secret_arn);
