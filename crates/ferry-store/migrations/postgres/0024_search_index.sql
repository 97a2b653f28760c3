-- Nothing on PostgreSQL: migration 0024 adds SQLite's search index filled outside the cycle (see
-- the SQLite file); PostgreSQL's pg_trgm index (0019) is kept in step by PostgreSQL itself.
-- Numbered here too so both backends' schema versions stay the same.
SELECT 1;
