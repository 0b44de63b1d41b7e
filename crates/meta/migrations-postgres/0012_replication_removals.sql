-- Replication (#17): a job either sends an image (REPLICATE) or, where a rule propagates
-- deletes (a Berth extension), removes it (DELETE) or some of its tags (UNTAG, `tags` naming
-- them) at the destination. The latest of a push, a delete or a tag removal decides the job.
ALTER TABLE replication_jobs ADD COLUMN action TEXT NOT NULL DEFAULT 'REPLICATE';
ALTER TABLE replication_events ADD COLUMN action TEXT NOT NULL DEFAULT 'REPLICATE';
