-- Device identity: a device names itself, so an enrollment that claims the device id or host
-- name of an enrolled agent without proving its node key is held here for an operator
-- (pending → approved | refused) and replaces nothing until approved. Its node key (the hash)
-- only becomes an agent's on approval.
CREATE TABLE enrollment_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    hostname TEXT NOT NULL,
    facts TEXT NOT NULL,
    profiles TEXT NOT NULL,
    node_hash TEXT NOT NULL UNIQUE,
    psk_id INTEGER NOT NULL,
    address TEXT,
    reason TEXT NOT NULL,
    conflict_agent_id INTEGER,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    decided_by TEXT,
    decided_at INTEGER
);
CREATE INDEX enrollment_requests_state ON enrollment_requests (state, id);
-- Pre-shared keys may be limited: uses_left (NULL: unlimited) is decremented in the statement
-- that admits an enrollment; device (NULL: any) is the one host name the key enrolls.
ALTER TABLE psks ADD COLUMN uses_left INTEGER;
ALTER TABLE psks ADD COLUMN device TEXT;
-- The run the server last handed the agent: events and logs are accepted for it only.
ALTER TABLE agents ADD COLUMN assigned_run TEXT;
