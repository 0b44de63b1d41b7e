-- Replication (#17): the queue, one job per image and destination, written in the transaction
-- that stores the pushed manifest. A job is IN_PROGRESS from the push until it ends COMPLETE or
-- FAILED (ECR's statuses); while IN_PROGRESS it is waiting for `due_at` (a retry's backoff) or,
-- with `claimed_by`, running on a node. A later push of the same image to the same destination
-- queues the job again (`generation` + 1): the outcome of a run is kept only for the
-- generation it ran.
CREATE TABLE replication_jobs (
    -- the source repository as the metadata names it (an account's key), and the image
    repository           TEXT NOT NULL,
    digest               TEXT NOT NULL,
    destination_region   TEXT NOT NULL,
    destination_registry TEXT NOT NULL,
    -- JSON array: the tags the pushes gave the image since the job last ran
    tags                 TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'COMPLETE', 'FAILED')),
    failure_code         TEXT,
    -- JSON array: immutable tags the destination already had on another image (not moved)
    dropped_tags         TEXT,
    attempts             BIGINT NOT NULL,
    generation           BIGINT NOT NULL,
    queued_at            BIGINT NOT NULL,
    due_at               BIGINT NOT NULL,
    claimed_by           TEXT,
    claimed_at           BIGINT,
    completed_at         BIGINT,
    PRIMARY KEY (repository, digest, destination_region, destination_registry)
);
CREATE INDEX replication_jobs_queue ON replication_jobs(status, due_at);
