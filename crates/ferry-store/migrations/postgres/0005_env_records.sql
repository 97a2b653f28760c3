-- Records of registered environments and the users they refer to (by e-mail/UPN), remapped by a
-- move in one transaction.
CREATE TABLE env_records (
    env TEXT NOT NULL,
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_by TEXT NOT NULL,
    modified_by TEXT NOT NULL,
    PRIMARY KEY (env, id)
);
