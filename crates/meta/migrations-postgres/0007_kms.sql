-- KMS keys, per account (#16). The key policy is a document evaluated by Berth's IAM evaluator;
-- rotation_period_days is set while automatic rotation is on.
CREATE TABLE kms_keys (
    key_id TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL,
    arn TEXT COLLATE "C" NOT NULL UNIQUE,
    description TEXT NOT NULL,
    key_manager TEXT NOT NULL,
    key_state TEXT NOT NULL,
    policy TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deletion_date BIGINT,
    pending_window_days BIGINT,
    rotation_period_days BIGINT,
    next_rotation_at BIGINT,
    current_material TEXT NOT NULL
);
CREATE INDEX kms_keys_by_account ON kms_keys (account_id, key_id);

-- Every version of a key's material, sealed under the master keyring (kind kms-key-material,
-- id <key_id>/<material_id>). Rotation adds one; none is removed while the key exists, so data
-- keys wrapped under old material still open.
CREATE TABLE kms_key_materials (
    key_id TEXT COLLATE "C" NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    material_id TEXT COLLATE "C" NOT NULL,
    sealed_material TEXT NOT NULL,
    rotation_type TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, material_id)
);

-- Aliases name keys of their own account: alias/<name>.
CREATE TABLE kms_aliases (
    account_id TEXT COLLATE "C" NOT NULL,
    alias_name TEXT COLLATE "C" NOT NULL,
    target_key_id TEXT COLLATE "C" NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, alias_name)
);

-- Grants on a key: operations (a JSON list) a grantee principal may use it for.
CREATE TABLE kms_grants (
    grant_id TEXT COLLATE "C" PRIMARY KEY,
    key_id TEXT COLLATE "C" NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    name TEXT,
    grantee_principal TEXT NOT NULL,
    retiring_principal TEXT,
    operations TEXT NOT NULL,
    constraints TEXT,
    issuing_account TEXT NOT NULL,
    grant_token TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX kms_grants_by_key ON kms_grants (key_id, grant_id);
