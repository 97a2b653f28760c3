-- Computers by name in a directory, for checking what an agent claims to be (the agents list, the
-- migration dashboard and every order check it per agent). SQLite indexes no object look-up key
-- (the object report scans them), and a scan of a million-object directory per agent made a
-- dashboard page of 200 agents take minutes. Partial: users and groups, the bulk of a cycle's
-- writes, are not indexed.
CREATE INDEX objects_device_name ON objects (directory, name_key) WHERE kind = 'device';
