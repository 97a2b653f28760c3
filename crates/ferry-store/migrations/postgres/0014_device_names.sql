-- Computers by name in a directory, for checking what an agent claims to be. The SQLite
-- migration of this number adds a partial index; PostgreSQL's `objects_name_key` (0001) already
-- serves the look-up, so this one only keeps the two backends' versions in step.
SELECT 1;
