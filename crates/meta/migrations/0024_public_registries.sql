-- ECR Public (#18): each account's public registry alias (pull URIs are
-- <public host>/<alias>/<repository>), unique across the deployment's accounts.
CREATE TABLE public_registry_aliases (
    account_id TEXT PRIMARY KEY,
    alias      TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
