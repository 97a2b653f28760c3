-- Where an operator's act came from (issue 19): the client address of its connection and the
-- request's id; and the time index that exports since a moment (`GET /audit?since=`) read.
ALTER TABLE audit ADD COLUMN address TEXT;
ALTER TABLE audit ADD COLUMN request_id TEXT;
CREATE INDEX audit_at ON audit (at);
