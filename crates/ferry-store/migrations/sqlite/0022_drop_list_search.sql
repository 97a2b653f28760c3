-- Migration 0019's trigram index is dropped on SQLite (issue 20): filling it for a first cycle of a
-- million decisions took the cycle from 25 s to 54 s on a quiet machine (sync-1m), past the 30 s it
-- must stay within, while it brought a whole-UPN search only from 2.1 s to 0.46 s. SQLite's
-- searches scan the decisions again (`Backend::DECISION_SEARCH` is none); PostgreSQL keeps its
-- pg_trgm index. See docs/BENCHMARKS.md, issue 20.
DROP TRIGGER IF EXISTS decisions_search_insert;
DROP TRIGGER IF EXISTS decisions_search_delete;
DROP TRIGGER IF EXISTS decisions_search_update_old;
DROP TRIGGER IF EXISTS decisions_search_update_new;
DROP VIEW IF EXISTS decisions_search_terms;
DROP TABLE IF EXISTS decisions_search;
