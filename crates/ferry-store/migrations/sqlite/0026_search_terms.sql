-- The trigrams SQLite's search index holds (issue 20): a search of one or two characters has no
-- trigram of its own, so it asks the index for every trigram that contains it, found here.
-- Written by the indexer with the entries (`search_index.rs`), in the same chunk transaction; a
-- trigram is never removed (one no entry holds any more finds no candidate), so the table holds at
-- most the distinct trigrams ever indexed (tens of thousands at a million decisions).
CREATE TABLE decisions_search_terms (term TEXT PRIMARY KEY) WITHOUT ROWID;

-- Entries indexed before this table existed have no trigrams here: the indexer passes over every
-- profile again (replacing each entry and recording its trigrams), and searches scan until it is
-- whole, as after any cycle.
DELETE FROM decisions_search_state;
