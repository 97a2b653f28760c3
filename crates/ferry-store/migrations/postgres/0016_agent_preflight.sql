-- A device's newest pre-flight (issue 18): the agent's own checks and the server's clock check,
-- as JSON; the batch's what-if and the orders read it.
ALTER TABLE agents ADD COLUMN preflight TEXT;
