-- Manifests sealed at rest (#16): a manifest's data keys wrapped under the key that protected
-- its repository when it was pushed — 'AES256' (the master keyring, kind manifest-data-keys,
-- identity '<repository key>@<digest>') or a KMS key's ARN —; its content is then sealed in the
-- blob format and its annotations (for the referrers API) sealed apart, base64. NULL: stored
-- as sent. `size` stays the manifest's own (plaintext) size.
ALTER TABLE manifests ADD COLUMN key_wrapping TEXT;
ALTER TABLE manifests ADD COLUMN wrapped_keys BYTEA;
