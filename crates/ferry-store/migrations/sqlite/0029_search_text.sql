-- Nothing on SQLite: migration 0029 stores PostgreSQL's folded searched text with each decision
-- (see the PostgreSQL file); SQLite's search reads its own index (0024, 0026), filled by its
-- indexer. Numbered here too so both backends' schema versions stay the same.
SELECT 1;
