-- Leases: scheduled work (GC, lifecycle) runs on the node holding its lease.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
