-- Replication (#17), across regions: the peer deployments this one replicates to or accepts
-- replicas from (one per region), each with the credential both sides share, its secret sealed
-- under the master keyring (SealedKind::ReplicationPeerSecret, named by the access key id).
CREATE TABLE replication_peers (
    region        TEXT PRIMARY KEY,
    -- where replicas for that region are sent (NULL: this side only accepts from the peer)
    endpoint      TEXT,
    -- PEM certificates trusted for the endpoint besides the system's roots
    ca_pem        TEXT,
    access_key_id TEXT NOT NULL UNIQUE,
    sealed_secret TEXT NOT NULL,
    -- JSON array: the accounts the peer deployment holds, on whose behalf it may replicate here
    accounts      TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- One event per replication that ended (COMPLETE or FAILED), listable after the job moves on.
CREATE TABLE replication_events (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    at                   BIGINT NOT NULL,
    repository           TEXT NOT NULL,
    digest               TEXT NOT NULL,
    destination_region   TEXT NOT NULL,
    destination_registry TEXT NOT NULL,
    status               TEXT NOT NULL,
    failure_code         TEXT,
    -- JSON arrays: the tags the image was replicated with, and the immutable ones left out
    tags                 TEXT NOT NULL,
    dropped_tags         TEXT NOT NULL
);
CREATE INDEX replication_events_image ON replication_events(repository, digest);
