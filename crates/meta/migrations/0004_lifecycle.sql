-- Lifecycle policies (validated text, as PutLifecyclePolicy received it) and the last preview.

ALTER TABLE repositories ADD COLUMN lifecycle_policy TEXT;
ALTER TABLE repositories ADD COLUMN lifecycle_evaluated_at BIGINT;

CREATE TABLE lifecycle_previews (
    repository_id BIGINT PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    policy_text   TEXT NOT NULL,
    status        TEXT NOT NULL,
    -- JSON list of {digest, tags, pushedAt, rulePriority, action}
    results       TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
