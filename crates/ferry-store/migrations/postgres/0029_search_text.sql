-- The searched text of a decision stored with it (issue 20): `lower()` of the eight values a
-- translation search looks in, joined by line feeds, as a generated column, and migration 0019's
-- pg_trgm index moved onto it (`decision_search.sql`, which follows this file).
--
-- Why: every search confirms its candidates (or, for a common term, scans) by matching the term
-- against the folded values, and PostgreSQL's `lower()` of multibyte text costs about 6 µs a row
-- of eight values: a count of up to 1,000 decisions holding `ë` (one in forty) read 40,000 rows in
-- 250 ms, against 30 ms over the stored text. The cycle computed the same text twice a row (the
-- index's expression and the vocabulary's `RETURNING`, migration 0028); it is now computed once,
-- when the row is written. A search matches `search_text LIKE lower(?)` alone: a term holds no
-- line feed (one that does finds nothing), so it is inside the joined text exactly when it is
-- inside one of the values (`lower` folds one character at a time).
--
-- The vocabulary of migration 0028 is counted again after this file (`fill_search_terms`): each
-- upsert added its trigrams and none took them back, so counts only grew. From here a cycle
-- takes back the trigrams of the text an upsert replaces and of a deleted decision's.
--
-- Adding the column rewrites the table once (about a minute at a million decisions), under the
-- migrations' lock.
DROP INDEX IF EXISTS decisions_search;
ALTER TABLE decisions ADD COLUMN search_text TEXT GENERATED ALWAYS AS (lower(source_name || E'\n'
    || coalesce(source_upn, '') || E'\n' || coalesce(source_mail, '') || E'\n' || coalesce(source_sid, '')
    || E'\n' || coalesce(target_name, '') || E'\n' || coalesce(target_upn, '') || E'\n'
    || coalesce(target_mail, '') || E'\n' || coalesce(target_sid, ''))) STORED;
