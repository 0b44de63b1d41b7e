-- Pull-through cache rules, per account: a repository prefix (`ROOT`, or a namespace without
-- its trailing `/`) mapped to an upstream registry, with the secret holding its credential.
CREATE TABLE pull_through_rules (
    account_id TEXT COLLATE "C" NOT NULL,
    prefix TEXT COLLATE "C" NOT NULL,
    upstream_url TEXT NOT NULL,
    upstream_registry TEXT,
    upstream_prefix TEXT,
    credential_arn TEXT,
    -- Berth's extension: seconds a cached tag is served before it is checked upstream again.
    refresh_seconds BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, prefix)
);

-- When each tag of a cache repository was last checked against its upstream: a tag is asked
-- about again once its rule's refresh interval has passed since (ECR's 24 hours by default).
CREATE TABLE pull_through_tag_checks (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    tag TEXT COLLATE "C" NOT NULL,
    checked_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, tag)
);
