-- One key per host name, computed in Rust (issue 20): `ferry_core::devices::host::host_key`, the
-- Unicode lower case. PostgreSQL's `lower()` depends on the database's ctype (under "C" it folds
-- only ASCII), so an agent of "ÅSA-PC" could miss its batch's computer "åsa-pc" (the key
-- `add_batch_computers` wrote in Rust), and its claim `lower(?)` the batch's key. From here every
-- host-name join and look-up compares keys written by Rust: `agents.host_key` (every agent,
-- replaced ones too: a batch's list shows them), `agents.hostname_claim` (live agents only,
-- unique) and `batch_computers.computer`.
--
-- Rust fills the column and rewrites the claims and the batches' keys right after this file, in
-- the same transaction (`rekey_hosts` of `sqlite.rs` and `postgres.rs`, with `migrate::agent_keys`
-- and `computer_keys`, run by the migration runner for this version):
-- SQL cannot compute the key. Where two live agents' names were one computer in Rust's lower case
-- but not in the database's, the newer keeps the claim, as migration 0013 did.
--
-- The three key columns compare by code point (`COLLATE "C"`), as SQLite's do: the list sorted by
-- host name is the same order on both backends, the (key, id) index serves equality, ranges and
-- order alike, and a join of two key columns has one collation.
ALTER TABLE agents ADD COLUMN host_key TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE agents ALTER COLUMN hostname_claim TYPE TEXT COLLATE "C";
ALTER TABLE batch_computers ALTER COLUMN computer TYPE TEXT COLLATE "C";
-- The agents of a host name, the batch joins (`host_key IN` a batch's computers) and the list
-- sorted by host name (key, then id): these replace the indexes on `lower(hostname)` of 0007 and
-- 0023.
DROP INDEX agents_hostname_lower;
DROP INDEX agents_sort_hostname;
CREATE INDEX agents_host_key ON agents (host_key, id);
-- A finer histogram of the keys, so that the planner's guess of how many agents a search's
-- `host_key LIKE '%term%'` finds is near the truth: with the default (100 buckets at 100,000
-- agents) "pc-0777" was guessed at 1,000 and the page walked the agents by id from the first,
-- filtering 77,700 of them (45–90 ms), where the trigram index finds its 100 in 1 ms.
ALTER TABLE agents ALTER COLUMN host_key SET STATISTICS 1000;
-- A batch's computers in key order: its page of agents sorted by host name walks them and looks
-- each up in the index above (`Backend::BATCH_AGENTS`).
DROP INDEX batch_computers_batch;
CREATE INDEX batch_computers_batch ON batch_computers (batch, computer);
