-- Bulk enrolment tokens (provisioning packages or BPRT references) per target Entra directory.
CREATE TABLE enrolment_tokens (
    id BIGSERIAL PRIMARY KEY,
    directory TEXT NOT NULL,
    kind TEXT NOT NULL,
    file_name TEXT,
    package_upn TEXT NOT NULL,
    content BYTEA NOT NULL,
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX enrolment_tokens_directory ON enrolment_tokens (directory, expires_at);
