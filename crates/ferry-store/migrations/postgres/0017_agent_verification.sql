-- A device's newest post-flight (issue 18): what the agent proved after its last run or rollback,
-- as JSON; the run's evidence on the agent's page.
ALTER TABLE agents ADD COLUMN verification TEXT;
