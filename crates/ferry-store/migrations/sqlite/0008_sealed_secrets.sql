-- Enrolment tokens' content is sealed by the server (AES-256-GCM under a key kept apart from the
-- database), so its stored length is no longer the uploaded one: keep that apart. The key id
-- sealing the database's secrets is kept in `meta` (secret_key_id).
ALTER TABLE enrolment_tokens ADD COLUMN size INTEGER;
