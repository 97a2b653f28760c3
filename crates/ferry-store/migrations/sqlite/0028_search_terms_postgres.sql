-- Nothing on SQLite: migration 0028 records the trigrams of PostgreSQL's searched text (see the
-- PostgreSQL file); SQLite's table of them is 0026's, written by its indexer. Numbered here too so
-- both backends' schema versions stay the same.
SELECT 1;
