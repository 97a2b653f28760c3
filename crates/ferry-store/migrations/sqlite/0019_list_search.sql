-- Substring search of the translation table at a million entries (issue 20): a trigram full-text
-- index over the names, UPNs, mail addresses and SIDs of both sides of each decision. One column,
-- the values joined by line feeds, so a term matches inside one value (a term holding a line feed
-- matches nothing: `query::decisions`). Contentless: the decisions keep the text, the index only
-- trigrams and positions; a row's entry is removed with FTS5's `delete` command and the text it
-- was indexed with, read from the row before it changes (BEFORE triggers). Not
-- `contentless_delete`: it needs SQLite 3.43, and Debian 12's sqlite3 (3.40) then cannot even
-- alter the database's other tables. Terms of one or two characters, which no trigram can serve,
-- are answered by a scan of the decisions (`query::decisions`).
--
-- Maintained by triggers in the statement that writes a decision, so every path (an override's
-- write, a small cycle, a profile's removal) keeps it in step. A cycle's bulk write (the path that
-- drops and rebuilds the decisions' indexes) drops the triggers too and refills the index in one
-- `INSERT … SELECT` inside its transaction: per-row trigger inserts of a million decisions cost
-- 140 s of CPU where the refill costs a fraction (see docs/BENCHMARKS.md, issue 20).
CREATE VIRTUAL TABLE decisions_search USING fts5(
    terms,
    content = '',
    tokenize = 'trigram'
);

-- The indexed text of each decision, written here once: the triggers and a cycle's bulk rebuild
-- (`sqlite.rs`, `rebuild_search`) read it.
CREATE VIEW decisions_search_terms AS
SELECT rid,
    source_name || char(10) || coalesce(source_upn, '') || char(10) || coalesce(source_mail, '')
    || char(10) || coalesce(source_sid, '') || char(10) || coalesce(target_name, '') || char(10)
    || coalesce(target_upn, '') || char(10) || coalesce(target_mail, '') || char(10) || coalesce(target_sid, '') AS terms
FROM decisions;

INSERT INTO decisions_search (rowid, terms) SELECT rid, terms FROM decisions_search_terms;

CREATE TRIGGER decisions_search_insert AFTER INSERT ON decisions BEGIN
    INSERT INTO decisions_search (rowid, terms) SELECT rid, terms FROM decisions_search_terms WHERE rid = new.rid;
END;

CREATE TRIGGER decisions_search_delete BEFORE DELETE ON decisions BEGIN
    INSERT INTO decisions_search (decisions_search, rowid, terms)
        SELECT 'delete', rid, terms FROM decisions_search_terms WHERE rid = old.rid;
END;

CREATE TRIGGER decisions_search_update_old BEFORE UPDATE OF source_name, source_upn, source_mail, source_sid,
    target_name, target_upn, target_mail, target_sid ON decisions BEGIN
    INSERT INTO decisions_search (decisions_search, rowid, terms)
        SELECT 'delete', rid, terms FROM decisions_search_terms WHERE rid = old.rid;
END;

CREATE TRIGGER decisions_search_update_new AFTER UPDATE OF source_name, source_upn, source_mail, source_sid,
    target_name, target_upn, target_mail, target_sid ON decisions BEGIN
    INSERT INTO decisions_search (rowid, terms) SELECT rid, terms FROM decisions_search_terms WHERE rid = new.rid;
END;
