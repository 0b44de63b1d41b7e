-- Pull-time update exclusions (#18): the IAM principals whose pulls do not move an image's
-- lastRecordedPullTime, per account (at most 100, ECR's quota).
CREATE TABLE pull_time_exclusions (
    account_id    TEXT NOT NULL,
    principal_arn TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, principal_arn)
);
