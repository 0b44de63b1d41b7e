-- Where an upload stands in blob storage (an object store's multipart upload and parts), as the
-- store described it after the last acknowledged chunk: any node continues from it.
ALTER TABLE uploads ADD COLUMN store_state TEXT NOT NULL DEFAULT '';
