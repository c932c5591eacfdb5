-- ckstore metadata schema, migration 004: pending snapshots (parts pushed one by one).
--
-- `ckstore put --parts TOTAL --path REL` adds one file to a pending snapshot RUN@STEP; the put
-- that brings the number of distinct paths to TOTAL builds the tree manifest from the parts
-- (sorted by path bytes), records the snapshot and deletes these rows in ONE transaction.
-- Until then RUN@STEP is not a snapshot: nothing here is visible to get, ls, queries or watch.
-- A pending snapshot names its run by name (the run row is created on completion).
CREATE TABLE pending (
    id           INTEGER PRIMARY KEY,
    run          TEXT    NOT NULL CHECK (run <> ''),
    step         INTEGER NOT NULL CHECK (step >= 0),
    parts_total  INTEGER NOT NULL CHECK (parts_total BETWEEN 1 AND 100000),
    replaces     INTEGER NOT NULL DEFAULT 0 CHECK (replaces IN (0, 1)),  -- --force: replace a complete RUN@STEP on completion
    created_at   INTEGER NOT NULL,                                       -- unix time, milliseconds (pending_grace counts from here)
    UNIQUE (run, step)
);

-- The parts received so far: one file object ('safetensors' or 'bytes' manifest) per path. A
-- part's file object and its chunks are reachable while the row exists (gc keeps them).
CREATE TABLE pending_parts (
    pending_id  INTEGER NOT NULL REFERENCES pending(id) ON DELETE CASCADE,
    path        TEXT    NOT NULL CHECK (path <> ''),   -- clean relative path, '/'-separated
    file_id     INTEGER NOT NULL REFERENCES manifests(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (pending_id, path)
) WITHOUT ROWID;
CREATE INDEX pending_parts_by_file ON pending_parts(file_id);
