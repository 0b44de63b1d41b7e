-- The web console (#19): sessions, kept server-side so every node knows them and signing out
-- revokes them, stored by the SHA-256 of their cookie value and bound to the access key they
-- signed in with; and failed sign-ins per subject (`key:<access key id>`, `ip:<address>`) for
-- throttling.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,
    access_key_id TEXT NOT NULL,
    csrf_token    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_key ON console_sessions (access_key_id);

CREATE TABLE console_sign_in_failures (
    subject TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX console_sign_in_failures_by_subject ON console_sign_in_failures (subject, at);
