-- The ECR control plane: accounts, principals and their access keys, registry secrets,
-- repository settings and resource tags, repository creation templates.

CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- The account root (id = account id, name 'root') and IAM-style users (id AIDA…).
CREATE TABLE principals (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('root', 'user')),
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    principal_id  TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    secret        TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'Active' CHECK (status IN ('Active', 'Inactive')),
    created_at    BIGINT NOT NULL
);

-- Keys the registry itself holds, e.g. the one registry tokens are signed with.
CREATE TABLE registry_secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

ALTER TABLE repositories ADD COLUMN tag_mutability TEXT NOT NULL DEFAULT 'MUTABLE';
ALTER TABLE repositories ADD COLUMN tag_mutability_exclusions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE repositories ADD COLUMN scan_on_push BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE repositories ADD COLUMN encryption_type TEXT NOT NULL DEFAULT 'AES256';
ALTER TABLE repositories ADD COLUMN kms_key TEXT;

CREATE TABLE repository_resource_tags (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (repository_id, key)
);

-- The template as the API received it (JSON), keyed by its prefix ('ROOT' for all).
CREATE TABLE repository_creation_templates (
    prefix     TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
