-- ferry schema, version 1 (SQLite). Forward-only: never edit once landed; add a new file instead.

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Leases elect one holder among servers sharing a database (cycle runs, schedulers).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- One row per scheduled slot: the primary key makes a slot's cycle run once, whichever server wins.
CREATE TABLE schedule_slots (
    profile TEXT NOT NULL,
    slot INTEGER NOT NULL,
    holder TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (profile, slot)
);

CREATE TABLE cycles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    profile TEXT NOT NULL,
    trigger TEXT NOT NULL,
    slot INTEGER,
    server TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    counts TEXT,
    plan_hash TEXT,
    export TEXT,
    error TEXT
);
CREATE INDEX cycles_profile ON cycles (profile, id);

CREATE TABLE directory_state (
    directory TEXT PRIMARY KEY,
    watermark TEXT,
    last_full_import INTEGER,
    last_import INTEGER NOT NULL,
    objects INTEGER NOT NULL
);

-- Objects as last imported. The single object report finds them by 64-bit hashes of their
-- lower-cased id, name, UPN, mail and SID (then compares exactly). On SQLite these key columns come
-- first in the row and are not indexed: five indexes over every object cost more on each bulk
-- import (about 1 µs per entry to sort) than a scan of the leading columns costs a report
-- (see docs/BENCHMARKS.md).
CREATE TABLE objects (
    rid INTEGER PRIMARY KEY,
    id_key INTEGER NOT NULL,
    name_key INTEGER NOT NULL,
    upn_key INTEGER,
    mail_key INTEGER,
    sid_key INTEGER,
    directory TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    dn TEXT,
    name TEXT NOT NULL,
    upn TEXT,
    mail TEXT,
    sid TEXT,
    uid_number INTEGER,
    gid_number INTEGER,
    members TEXT,
    attrs TEXT,
    hash INTEGER NOT NULL,
    UNIQUE (directory, kind, id)
);

CREATE TABLE plans (
    profile TEXT PRIMARY KEY,
    cycle_id INTEGER NOT NULL,
    hash TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    mode TEXT NOT NULL,
    rules TEXT NOT NULL,
    counts TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE plan_writes (
    profile TEXT NOT NULL,
    seq INTEGER NOT NULL,
    op TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (profile, seq)
);

CREATE TABLE approvals (
    profile TEXT PRIMARY KEY,
    plan_hash TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_at INTEGER NOT NULL
);

-- Every decision of the current plan; the translation table is its `matched` rows. A rowid table:
-- its rows are too wide for WITHOUT ROWID to pay.
CREATE TABLE decisions (
    rid INTEGER PRIMARY KEY,
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    status TEXT NOT NULL,
    rule INTEGER,
    source_name TEXT NOT NULL,
    source_upn TEXT,
    source_mail TEXT,
    source_sid TEXT,
    source_uid INTEGER,
    source_gid INTEGER,
    target_id TEXT,
    target_name TEXT,
    target_upn TEXT,
    target_mail TEXT,
    target_sid TEXT,
    target_uid INTEGER,
    target_gid INTEGER,
    candidates TEXT,
    hash INTEGER NOT NULL,
    first_cycle INTEGER NOT NULL,
    changed_cycle INTEGER NOT NULL,
    UNIQUE (profile, kind, source_id)
);
CREATE INDEX decisions_status ON decisions (profile, status);
CREATE INDEX decisions_source_sid ON decisions (source_sid);
CREATE INDEX decisions_target_id ON decisions (target_id);

CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    cycle_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    change TEXT NOT NULL
);
CREATE INDEX history_object ON history (kind, source_id);

CREATE TABLE logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    cycle_id INTEGER,
    profile TEXT,
    directory TEXT,
    level TEXT NOT NULL,
    code TEXT NOT NULL,
    object_kind TEXT,
    object_id TEXT,
    object_name TEXT,
    message TEXT NOT NULL
);
CREATE INDEX logs_profile ON logs (profile, id);
CREATE INDEX logs_level ON logs (level, id);
CREATE INDEX logs_object ON logs (object_id);
