-- Sign-in limits and session expiry. Forward-only.
-- A session's last use (coalesced: written at most once a minute), for the idle timeout.
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
-- Failed sign-ins per account (`account:<name>`), shared by every server on this database.
CREATE TABLE sign_in_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_at INTEGER NOT NULL
);
