-- A batch's wave as the servers keep it (issue 18): halted by itself, resumed by an operator.
-- Apart from the batch's own document, which the operator replaces with `batch put`, so that
-- putting a batch again neither clears nor forges a halt. Changed by compare-and-swap only.
CREATE TABLE batch_waves (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
