-- Blobs sealed at rest (#16): a blob's data keys, wrapped once per key that protects it —
-- 'AES256' (the master keyring, sealed with kind blob-data-keys and the digest as its id) or a
-- KMS key's ARN (KMS ciphertext with the encryption context {"berth:blob": digest}). Every
-- row of a digest wraps the same keys, the ones its stored bytes are sealed under. No foreign
-- key to blobs: the keys are recorded before the bytes are published and the blob record made.
CREATE TABLE blob_keys (
    digest TEXT COLLATE "C" NOT NULL,
    wrapping TEXT COLLATE "C" NOT NULL,
    layers BIGINT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (digest, wrapping)
);

-- An upload into a sealed repository: its data keys wrapped as above (bound to the upload's
-- id), and the plaintext past its last whole chunk, sealed (berth-envelope's staged chunk).
ALTER TABLE uploads ADD COLUMN key_wrapping TEXT;
ALTER TABLE uploads ADD COLUMN wrapped_keys BYTEA;
ALTER TABLE uploads ADD COLUMN staged_chunk BYTEA;
