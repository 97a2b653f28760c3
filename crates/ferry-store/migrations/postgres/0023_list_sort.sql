-- Sorted lists (issue 20): each column a console list sorts on is indexed with the key after it,
-- so that a keyset page (`(value, key) > (?, ?)`, reversed for descending) is a range of the
-- index at any depth. Text compares by code point: `COLLATE "C"` here and in the queries
-- (`Backend::BINARY`), whatever the database's default collation, the order SQLite's binary
-- collation gives. Indexes on `decisions` slow the sync cycle's writes, so there is one: the
-- source names among one status's decisions (the translation table lists the matched ones); the
-- kind and the status are the order of `decisions_status` (profile, status, kind, source_id)
-- already. A second, of target names, added about 4 s to a first cycle of a million (sync-1m).
CREATE INDEX decisions_source_name ON decisions (profile, status, source_name COLLATE "C", kind, source_id);
-- Agents by host name (ASCII letters in lower case: `lower` under "C"), state and last contact,
-- then id. `agents_hostname_lower` stays for look-ups by name in the database's collation; the
-- state and last-contact indexes of 0007 are replaced by these, which serve them as well (a state
-- is a lowercase ASCII word, the same order in any collation).
CREATE INDEX agents_sort_hostname ON agents ((lower(hostname COLLATE "C")), id);
DROP INDEX agents_state;
CREATE INDEX agents_state ON agents (state, id);
DROP INDEX agents_last_contact;
CREATE INDEX agents_last_contact ON agents (last_contact, id);
-- Refused communications by when last seen and by address; the audit trail filtered by action
-- or operator, by id.
DROP INDEX failed_comms_at;
CREATE INDEX failed_comms_at ON failed_comms (at, id);
CREATE INDEX failed_comms_address ON failed_comms ((coalesce(address, '')) COLLATE "C", id);
CREATE INDEX audit_action ON audit (action, id);
CREATE INDEX audit_actor ON audit (actor, id);
