-- The steps of the run the server last handed the agent (a JSON array of step ids, as
-- ferry_core::runbook::plan_steps made them): events are checked against them, so a
-- "succeeded" needs every step before it.
ALTER TABLE agents ADD COLUMN assigned_steps TEXT;
-- Repeated refusals are one row: how many, and when first and last seen (at).
ALTER TABLE failed_comms ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE failed_comms ADD COLUMN first_at INTEGER;
UPDATE failed_comms SET first_at = at;
CREATE INDEX failed_comms_at ON failed_comms (at);
-- The bytes of log each run was sent (capped per run).
CREATE TABLE agent_log_bytes (
    agent_id INTEGER NOT NULL,
    run TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (agent_id, run)
);
