-- Operators who sign in with a password: its argon2 hash (PHC string) and their role.
CREATE TABLE operator_passwords (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
