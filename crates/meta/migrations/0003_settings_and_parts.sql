-- Account settings (BLOB_MOUNTING, REGISTRY_POLICY_SCOPE, BASIC_SCAN_TYPE_VERSION), and what the
-- ECR API's UploadLayerPart needs to enforce its minimum part size.

CREATE TABLE account_settings (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- Whether the last part received was under the minimum (allowed only for the last part), and
-- whether a part under the minimum was followed by another (CompleteLayerUpload refuses then).
ALTER TABLE uploads ADD COLUMN last_part_small BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE uploads ADD COLUMN part_too_small BOOLEAN NOT NULL DEFAULT FALSE;
