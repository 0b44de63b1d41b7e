-- Image signing (#18): the signing profiles Berth holds for each account (an ECDSA P-256 key
-- pair; the private key sealed under the master keyring as SealedKind::SigningProfileKey,
-- named by the profile's ARN), and each image's signing status per profile.
CREATE TABLE signing_profiles (
    arn                TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL,
    name               TEXT NOT NULL,
    public_key_pem     TEXT NOT NULL,
    sealed_private_key TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    revoked_at         BIGINT,
    UNIQUE (account_id, name)
);

CREATE TABLE image_signings (
    repository_id  BIGINT NOT NULL,
    digest         TEXT NOT NULL,
    profile_arn    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'COMPLETE', 'FAILED')),
    failure_code   TEXT,
    failure_reason TEXT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest, profile_arn),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
