-- PostgreSQL's translation search (issue 20): a pg_trgm GIN index over each decision's searched
-- text (the column of migration 0029), which `query::decisions` searches with `LIKE '%term%'`
-- (`Postgres::DECISION_SEARCH`). Applied with migration 0029, and again at each start while it is
-- missing (`Postgres::ensure_search_index`). As in migration 0019, the extension is created in
-- `public` when missing and this role may; when it may not, nothing is made, a WARNING says so,
-- and searches stay correct, scanning the stored text.
DO $$
DECLARE
    ext_schema TEXT;
BEGIN
    SELECT n.nspname INTO ext_schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    IF ext_schema IS NULL THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'ferry: the pg_trgm extension is not installed and this role may not create it (%): translation search will scan the table; as a superuser run CREATE EXTENSION pg_trgm SCHEMA public, then see migration 0019', SQLERRM;
        END;
        SELECT n.nspname INTO ext_schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'pg_trgm';
    END IF;
    IF ext_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS decisions_search ON decisions USING gin (search_text %I.gin_trgm_ops)', ext_schema);
    END IF;
END
$$;
