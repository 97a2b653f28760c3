-- Devices: pre-shared keys, enrolled agents and their harvests, runs' events and logs, runbooks,
-- batches, and failed agent communications.
CREATE TABLE psks (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE TABLE agents (
    id BIGSERIAL PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL,
    os TEXT NOT NULL,
    facts TEXT NOT NULL,
    node_hash TEXT NOT NULL UNIQUE,
    psk_id BIGINT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    last_contact BIGINT NOT NULL,
    last_address TEXT,
    agent_version TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX agents_hostname ON agents (hostname);
CREATE TABLE agent_profiles (
    agent_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (agent_id, name)
);
CREATE TABLE agent_events (
    id BIGSERIAL PRIMARY KEY,
    agent_id BIGINT NOT NULL,
    run TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    at BIGINT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    progress BIGINT
);
CREATE INDEX agent_events_run ON agent_events (agent_id, run, id);
CREATE TABLE agent_logs (
    agent_id BIGINT NOT NULL,
    run TEXT NOT NULL,
    start BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (agent_id, run, start)
);
CREATE TABLE runbooks (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE batches (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- A computer is in at most one batch: the key is the computer.
CREATE TABLE batch_computers (
    computer TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    added_at BIGINT NOT NULL
);
CREATE INDEX batch_computers_batch ON batch_computers (batch);
CREATE TABLE failed_comms (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    address TEXT,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    agent_id BIGINT,
    device_id TEXT
);
