-- Every column of the translation table sorts (issue 20): target name, source and target SID,
-- rule, besides the source name (0023). An index of each on `decisions`, kept in step inside the
-- cycle's transaction, would cost the first cycle of a million decisions about 4 s a column
-- (0023's note; the cycle is at its 30 s limit). So the order is kept here instead, filled by the
-- search indexer (`search_index.rs`) after each cycle commits, in the same chunks and under the
-- same marks as the search index: a listing reads it only when it is whole for the profiles
-- listed (then every row here holds its decision's current values), and sorts the decisions
-- themselves until then.
--
-- One row per decision, `o_rid` = `decisions.rid`; the columns are prefixed so that a listing
-- joined to `decisions` names each without ambiguity. A missing text is stored empty, a missing
-- rule as -1: the order a listing gives them (first).
CREATE TABLE decisions_order (
    o_rid INTEGER PRIMARY KEY,
    o_profile TEXT NOT NULL,
    o_status TEXT NOT NULL,
    o_kind TEXT NOT NULL,
    o_source_id TEXT NOT NULL,
    o_target_name TEXT NOT NULL,
    o_source_sid TEXT NOT NULL,
    o_target_sid TEXT NOT NULL,
    o_rule INTEGER NOT NULL
);
-- Its indexes, (profile, status, value, kind, source id) for each of the four columns, are the
-- indexer's (`search_index::ORDER_INDEXES`): built once the table is filled, dropped once a pass
-- has written many rows (at a million, inserting rows one by one into four indexes took minutes of
-- random page writes; building each takes seconds). A listing reads this table only when all four
-- exist and the index is whole.

-- A deleted decision's row goes with it, in the cycle's own transaction (a cycle deletes few):
-- a row here is always of a decision that exists, with its key, so a listing joins the two by
-- key (as on PostgreSQL) and never shows a decision twice; only its values may be stale, until
-- the indexer's pass.
CREATE TRIGGER decisions_order_gone AFTER DELETE ON decisions BEGIN
    DELETE FROM decisions_order WHERE o_rid = old.rid;
END;

-- Rows the indexer's pass has written so far: past `search_index::BULK` it drops the indexes.
ALTER TABLE decisions_search_state ADD COLUMN pass_rows INTEGER NOT NULL DEFAULT 0;

-- Decisions indexed before this table existed have no row here: the indexer passes over every
-- profile again, and listings sort the decisions (and searches scan) until it is whole.
DELETE FROM decisions_search_state;
