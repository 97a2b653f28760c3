-- Substring search of the translation table at a million entries (issue 20): a pg_trgm GIN index
-- over the names, UPNs, mail addresses and SIDs of both sides of each decision, lower-cased and
-- joined by line feeds (so a term matches inside one value). `query::decisions` searches with
-- `LIKE` over exactly this expression (`Postgres::DECISION_SEARCH`), which the index serves for
-- terms of three characters or more.
--
-- pg_trgm ships with PostgreSQL (Debian: postgresql-15) but creating an extension needs the
-- CREATE privilege on the database (PostgreSQL 13+: trusted extensions) or a superuser. When
-- ferry's role may not create it and nobody installed it, this migration still succeeds: it
-- raises a WARNING saying so, no index is made, and searches stay correct but scan the table
-- (seconds at a million entries). At each start without the index the server runs this block
-- again and, if there is still none, logs the same warning (`Postgres::ensure_search_index`):
-- an administrator runs `CREATE EXTENSION pg_trgm SCHEMA public;` as a superuser and restarts
-- ferry, which then creates the index. Nothing else changes.
--
-- The extension goes into `public` when ferry creates it, not the role's first schema, so that a
-- dropped ferry schema does not take it (and every other schema's index) with it; the operator
-- class is named with the schema the extension is in, wherever that is.
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
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS decisions_search ON decisions USING gin ((lower(source_name || E''\n'' || coalesce(source_upn, '''') || E''\n'' '
            '|| coalesce(source_mail, '''') || E''\n'' || coalesce(source_sid, '''') || E''\n'' || coalesce(target_name, '''') || E''\n'' '
            '|| coalesce(target_upn, '''') || E''\n'' || coalesce(target_mail, '''') || E''\n'' || coalesce(target_sid, ''''))) %I.gin_trgm_ops)',
            ext_schema);
    END IF;
END
$$;
