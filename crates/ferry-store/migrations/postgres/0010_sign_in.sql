-- Sign-in limits and session expiry. Forward-only.
-- A session's last use (coalesced: written at most once a minute), for the idle timeout.
ALTER TABLE tokens ADD COLUMN last_used_at BIGINT;
-- Failed sign-ins per account (`account:<name>`), shared by every server on this database.
CREATE TABLE sign_in_failures (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_at BIGINT NOT NULL
);
