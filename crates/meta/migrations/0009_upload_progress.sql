-- An upload's acknowledged progress: the bytes it holds and the running hash over them, so a
-- node that did not receive the previous chunks continues without re-reading them.
ALTER TABLE uploads ADD COLUMN acknowledged_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN hash_state BLOB;
