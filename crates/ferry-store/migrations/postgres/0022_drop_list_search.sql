-- Nothing on PostgreSQL: migration 0022 drops SQLite's trigram index of 0019 (see the SQLite
-- file); PostgreSQL keeps its pg_trgm index. Numbered here too so both backends' schema versions
-- stay the same.
SELECT 1;
