-- Nothing on PostgreSQL: migration 0026 records the trigrams of SQLite's search index (see the
-- SQLite file). Numbered here too so both backends' schema versions stay the same.
SELECT 1;
