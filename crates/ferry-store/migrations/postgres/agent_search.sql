-- PostgreSQL's agent search (issue 20): pg_trgm GIN indexes over the host-name key and the device
-- id in lower case, the two expressions `query::agents` searches with `LIKE '%term%'`, so a term of
-- three characters or more reads the index instead of every agent. Applied with migration 0025,
-- and again at each start while either index is missing (`Postgres::ensure_search_index`): like
-- migration 0019's, it makes nothing when pg_trgm is neither installed nor creatable by ferry's
-- role (0019 tried and warned), and searches stay correct, scanning the agents.
DO $$
DECLARE
    ext_schema TEXT;
BEGIN
    SELECT n.nspname INTO ext_schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    IF ext_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS agents_search_host ON agents USING gin (host_key %I.gin_trgm_ops)', ext_schema);
        EXECUTE format('CREATE INDEX IF NOT EXISTS agents_search_device ON agents USING gin ((lower(device_id)) %I.gin_trgm_ops)', ext_schema);
    END IF;
END
$$;
