-- Verification on pull (#18, beyond ECR): the keys a repository's images must be signed by to be
-- pulled (JSON: trusted signing profile ARNs and PEM public keys); NULL: no verification. Read
-- with the manifest, as the pull policy is, so a pull costs no extra query.
ALTER TABLE repositories ADD COLUMN pull_verification TEXT;
