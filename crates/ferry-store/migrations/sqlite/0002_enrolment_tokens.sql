-- Bulk enrolment tokens (provisioning packages or BPRT references) per target Entra directory.
CREATE TABLE enrolment_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    directory TEXT NOT NULL,
    kind TEXT NOT NULL,
    file_name TEXT,
    package_upn TEXT NOT NULL,
    content BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    uploaded_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX enrolment_tokens_directory ON enrolment_tokens (directory, expires_at);
