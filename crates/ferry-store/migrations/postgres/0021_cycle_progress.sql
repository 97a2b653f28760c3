-- What a running cycle is doing, in words and figures (issue 19): "read 120,000 source and
-- 98,000 target objects", "matching …", "storing …"; cleared when the cycle ends.
ALTER TABLE cycles ADD COLUMN progress TEXT;
