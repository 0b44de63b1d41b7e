-- ECR Public (#18): the bytes each source address pulled anonymously from the public host,
-- per calendar month (UTC, 'YYYY-MM'), against the monthly allowance.
CREATE TABLE anonymous_pull_usage (
    source TEXT NOT NULL,
    month  TEXT NOT NULL,
    bytes  BIGINT NOT NULL,
    PRIMARY KEY (source, month)
);
