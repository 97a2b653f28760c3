-- One key per host name, computed in Rust (issue 20): `ferry_core::devices::host::host_key`, the
-- Unicode lower case. SQLite's `lower()` folds only ASCII, so an agent of "ÅSA-PC" was not found
-- by its batch's computer "åsa-pc" (the key `add_batch_computers` wrote in Rust), nor was its
-- claim `lower(?)` the batch's key. From here every host-name join and look-up compares keys
-- written by Rust: `agents.host_key` (every agent, replaced ones too: a batch's list shows them),
-- `agents.hostname_claim` (live agents only, unique) and `batch_computers.computer`.
--
-- Rust fills the column and rewrites the claims and the batches' keys right after this file, in
-- the same transaction (`rekey_hosts` of `sqlite.rs` and `postgres.rs`, with `migrate::agent_keys`
-- and `computer_keys`, run by the migration runner for this version):
-- SQL cannot compute the key. Where two live agents' names were one computer in Rust's lower case
-- but not in SQLite's (`ÅSA-PC`, `åsa-pc`), the newer keeps the claim, as migration 0013 did.
ALTER TABLE agents ADD COLUMN host_key TEXT NOT NULL DEFAULT '';
-- The agents of a host name, the batch joins (`host_key IN` a batch's computers) and the list
-- sorted by host name (key, then id): this replaces 0023's index on `lower(hostname)`.
DROP INDEX agents_hostname_lower;
CREATE INDEX agents_host_key ON agents (host_key, id);
-- A batch's computers in key order: its page of agents sorted by host name walks them and looks
-- each up in the index above (`Backend::BATCH_AGENTS`).
DROP INDEX batch_computers_batch;
CREATE INDEX batch_computers_batch ON batch_computers (batch, computer);
