-- "Does any manifest of this repository reference this blob?" is GC's question for every link.
-- With only the primary key (repository_id, manifest_digest, …) SQLite answered it by scanning
-- the repository's references (10 s for 36,000 links); this index answers it with one lookup.
-- It also serves every query the child_digest index served, which it replaces.
CREATE INDEX manifest_references_blob ON manifest_references(child_digest, repository_id, child_kind);
DROP INDEX manifest_references_child;
