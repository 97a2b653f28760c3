-- Directories and sync profiles added in the console (JSON documents; a directory's credential is
-- kept here and never returned by the API), and the indexes the console's agent pages page by.
CREATE TABLE console_directories (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE console_profiles (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX agents_hostname_lower ON agents (lower(hostname));
CREATE INDEX agents_last_contact ON agents (last_contact);
CREATE INDEX agents_state ON agents (state);
CREATE INDEX agent_events_agent ON agent_events (agent_id, id);
-- The translation table and the What-If page by (profile, kind, source id) among one status: this
-- index serves both the filter and the order, so a page needs no sort of a million rows.
DROP INDEX decisions_status;
CREATE INDEX decisions_status ON decisions (profile, status, kind, source_id);
