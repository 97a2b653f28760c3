-- A batch's computer as the operator typed it (`PC-0001`), shown as typed; `computer` stays the
-- lower-case key that membership and matching use (case ignored). NULL for rows added before:
-- those show their key.
ALTER TABLE batch_computers ADD COLUMN name TEXT;
