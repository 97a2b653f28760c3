-- Every column of the translation table sorts (issue 20): target name, source and target SID,
-- rule, besides the source name (0023). SQLite keeps this order in a table its search indexer
-- fills after each cycle (see the SQLite file); here `decisions_order` is a view over `decisions`
-- with the same columns but the rid (a listing joins it by key), and these indexes serve it (PostgreSQL's sync cycle has no 30 s limit
-- of its own; they cost it what BENCHMARKS.md says). The view's columns are the indexed
-- expressions exactly (the planner matches them as written): text by code point (`COLLATE "C"`,
-- SQLite's binary order), a missing text as empty, a missing rule as -1.
CREATE VIEW decisions_order AS
SELECT profile AS o_profile, status AS o_status, kind AS o_kind, source_id AS o_source_id,
    (coalesce(target_name, '') COLLATE "C") AS o_target_name,
    (coalesce(source_sid, '') COLLATE "C") AS o_source_sid,
    (coalesce(target_sid, '') COLLATE "C") AS o_target_sid,
    coalesce(rule, -1) AS o_rule
FROM decisions;
CREATE INDEX decisions_order_target_name ON decisions (profile, status, (coalesce(target_name, '') COLLATE "C"), kind, source_id);
CREATE INDEX decisions_order_source_sid ON decisions (profile, status, (coalesce(source_sid, '') COLLATE "C"), kind, source_id);
CREATE INDEX decisions_order_target_sid ON decisions (profile, status, (coalesce(target_sid, '') COLLATE "C"), kind, source_id);
CREATE INDEX decisions_order_rule ON decisions (profile, status, (coalesce(rule, -1)), kind, source_id);
