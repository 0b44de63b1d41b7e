-- Access control in the IAM policy language: groups, identity policies (inline on a user or a
-- group, and customer-managed policies attached to either), and the resource policies ECR keeps
-- (one per repository, one per registry). Policy documents are stored as received, validated.

CREATE TABLE iam_groups (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE iam_group_members (
    group_id     TEXT NOT NULL REFERENCES iam_groups(id) ON DELETE CASCADE,
    principal_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, principal_id)
);
CREATE INDEX iam_group_members_principal ON iam_group_members(principal_id);

-- owner_id: a principal id (AIDA…) or a group id (AGPA…).
CREATE TABLE iam_inline_policies (
    owner_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (owner_id, name)
);

CREATE TABLE iam_managed_policies (
    arn        TEXT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name       TEXT NOT NULL,
    path       TEXT NOT NULL DEFAULT '/',
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

-- policy_arn may name an AWS-managed policy (arn:aws:iam::aws:policy/…), which Berth ships
-- built in rather than storing, so there is no foreign key.
CREATE TABLE iam_policy_attachments (
    owner_id   TEXT NOT NULL,
    policy_arn TEXT NOT NULL,
    PRIMARY KEY (owner_id, policy_arn)
);
CREATE INDEX iam_policy_attachments_arn ON iam_policy_attachments(policy_arn);

ALTER TABLE repositories ADD COLUMN repository_policy TEXT;

CREATE TABLE registry_policies (
    account_id  TEXT PRIMARY KEY REFERENCES accounts(id),
    policy_text TEXT NOT NULL
);
