-- `berth migrate`: an import of an embedded data directory into this database, begun and (once
-- every table and blob is across) finished. Nodes refuse to start while one is unfinished.
-- PostgreSQL's own: the embedded store is never imported into.
CREATE TABLE data_imports (
    source      TEXT COLLATE "C" PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT
);
