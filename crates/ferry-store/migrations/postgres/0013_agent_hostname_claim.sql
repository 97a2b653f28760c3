-- At most one live agent per host name (case ignored): the unique index lets exactly one of two
-- servers enrolling two new devices with one host name at once take it; the other is held for an
-- operator. An agent replaced by an approved enrollment gives its claim up (NULL). Where an
-- earlier version let several live agents share a host name, the newest keeps the claim.
ALTER TABLE agents ADD COLUMN hostname_claim TEXT;
UPDATE agents SET hostname_claim = lower(hostname)
WHERE state <> 'replaced'
  AND id = (SELECT max(a.id) FROM agents a WHERE lower(a.hostname) = lower(agents.hostname) AND a.state <> 'replaced');
CREATE UNIQUE INDEX agents_hostname_claim ON agents (hostname_claim);
