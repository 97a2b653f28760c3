-- SQLite's translation search index (issue 20), filled outside the cycle: migration 0019's index,
-- kept in step inside the cycle's transaction, cost a first cycle of a million decisions 33 s
-- (0022 dropped it). This one is written by a background indexer after each cycle commits, in
-- chunks, each chunk one short write transaction (`search_index.rs`), and a search uses it only
-- when it is whole for the profiles searched; until then the scan answers.
--
-- One row per decision, rowid = `decisions.rid`: the names, UPNs, mail addresses and SIDs of both
-- sides, each folded by `ferry_fold` (the scan's folding), joined by line feeds. Trigrams of the
-- folded text as they are (`case_sensitive 1`: folding is ferry's, not FTS5's); no positions
-- (`detail=none`): a search asks for the term's trigrams, not their phrase, and confirms every
-- candidate against the row's current values with the scan's own condition, so an entry left stale
-- (a row changed or deleted since it was indexed) is never shown. Contentless with
-- `contentless_delete` (SQLite ≥ 3.43; ferry's SQLite is bundled) so an entry is replaced or
-- deleted by rowid. A sqlite3 shell older than 3.43 (Debian 12's 3.40) can read the other tables of
-- such a database but not this one, nor alter the schema (ferry never needs it to).
CREATE VIRTUAL TABLE decisions_search USING fts5(
    terms,
    content = '',
    contentless_delete = 1,
    detail = none,
    tokenize = 'trigram case_sensitive 1'
);

-- The indexer's mark, per profile: every decision of the profile whose `changed_cycle` is at most
-- `indexed_cycle` is in the index with its current values (a decision's values change only with
-- its `changed_cycle`, written by the cycle that changes them, and one profile's cycles commit in
-- the order of their ids: a new cycle aborts the running one, which then cannot commit). The index
-- is whole for a profile when `indexed_cycle` reaches its plan's `cycle_id` (the last committed
-- cycle). A pass towards `pass_cycle` walks the decisions by rid; `pass_rid` is how far it got,
-- written in the chunk's own transaction, so a killed indexer resumes there.
CREATE TABLE decisions_search_state (
    profile TEXT PRIMARY KEY,
    indexed_cycle INTEGER NOT NULL,
    pass_cycle INTEGER,
    pass_rid INTEGER NOT NULL DEFAULT 0
);

-- Decisions deleted since they were indexed: the indexer removes their entries (unless the rid is
-- in use again, whose entry its own pass replaces). Only a cycle deletes decisions, a few a cycle.
CREATE TABLE decisions_search_gone (rid INTEGER PRIMARY KEY);

CREATE TRIGGER decisions_search_gone AFTER DELETE ON decisions BEGIN
    INSERT OR IGNORE INTO decisions_search_gone (rid) VALUES (old.rid);
END;
