-- The live agents' host-name claims with their states, in one narrow index: the overview's
-- devices by state (`GET /batches?states=true`) reads every live agent's claim and state, and
-- read from the table each row brought its facts along. SQLite keeps the unique index on the
-- claim (0013) for the claim itself; this one only covers the read.
CREATE INDEX agents_claim_state ON agents (hostname_claim, state) WHERE hostname_claim IS NOT NULL;
