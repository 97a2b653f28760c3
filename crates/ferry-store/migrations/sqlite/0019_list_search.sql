-- Substring search of the translation table at a million entries (issue 20): a trigram full-text
-- index over the names, UPNs, mail addresses and SIDs of both sides of each decision. One column,
-- the values joined by line feeds, so a term (which never holds a line feed: the store refuses
-- none, it simply matches nothing across two values) matches inside one value. Contentless: the
-- decisions keep the text, the index keeps only trigrams and positions; `contentless_delete`
-- lets the triggers drop a row's entry by its rowid. Terms of one or two characters, which no
-- trigram can serve, are answered by a scan of the decisions (`query::decisions`).
--
-- Maintained by triggers in the statement that writes a decision, so every path (a cycle's bulk
-- write, an override's, a profile's removal) keeps it in step. A cycle's bulk write inserts its
-- decisions in rowid order inside one transaction, which FTS5 buffers and flushes as sorted
-- segments: the cost is the trigram tokenising itself (see docs/BENCHMARKS.md, issue 20).
CREATE VIRTUAL TABLE decisions_search USING fts5(
    terms,
    content = '',
    contentless_delete = 1,
    tokenize = 'trigram'
);

INSERT INTO decisions_search (rowid, terms)
SELECT rid,
    source_name || char(10) || coalesce(source_upn, '') || char(10) || coalesce(source_mail, '')
    || char(10) || coalesce(source_sid, '') || char(10) || coalesce(target_name, '') || char(10)
    || coalesce(target_upn, '') || char(10) || coalesce(target_mail, '') || char(10) || coalesce(target_sid, '')
FROM decisions;

CREATE TRIGGER decisions_search_insert AFTER INSERT ON decisions BEGIN
    INSERT INTO decisions_search (rowid, terms) VALUES (new.rid,
        new.source_name || char(10) || coalesce(new.source_upn, '') || char(10) || coalesce(new.source_mail, '')
        || char(10) || coalesce(new.source_sid, '') || char(10) || coalesce(new.target_name, '') || char(10)
        || coalesce(new.target_upn, '') || char(10) || coalesce(new.target_mail, '') || char(10) || coalesce(new.target_sid, ''));
END;

CREATE TRIGGER decisions_search_delete AFTER DELETE ON decisions BEGIN
    DELETE FROM decisions_search WHERE rowid = old.rid;
END;

CREATE TRIGGER decisions_search_update AFTER UPDATE OF source_name, source_upn, source_mail, source_sid,
    target_name, target_upn, target_mail, target_sid ON decisions BEGIN
    DELETE FROM decisions_search WHERE rowid = old.rid;
    INSERT INTO decisions_search (rowid, terms) VALUES (new.rid,
        new.source_name || char(10) || coalesce(new.source_upn, '') || char(10) || coalesce(new.source_mail, '')
        || char(10) || coalesce(new.source_sid, '') || char(10) || coalesce(new.target_name, '') || char(10)
        || coalesce(new.target_upn, '') || char(10) || coalesce(new.target_mail, '') || char(10) || coalesce(new.target_sid, ''));
END;
