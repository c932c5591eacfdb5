-- ckstore PostgreSQL metadata schema, migration 004: pending snapshots (parts pushed one by
-- one); the SQLite migration Schema/004-pending.sql, translated (same columns and meaning).
--
-- The put that brings the number of distinct part paths to parts_total builds the tree, records
-- the snapshot and deletes these rows in one transaction (under the store's write lock, so two
-- ranks finishing at the same moment complete it exactly once). A part's file object and its
-- chunks are reachable while its row exists.
CREATE TABLE pending (
    id           BIGSERIAL PRIMARY KEY,
    run          TEXT     NOT NULL CHECK (run <> ''),
    step         BIGINT   NOT NULL CHECK (step >= 0),
    parts_total  INTEGER  NOT NULL CHECK (parts_total BETWEEN 1 AND 100000),
    replaces     BOOLEAN  NOT NULL DEFAULT FALSE,
    created_at   BIGINT   NOT NULL,
    UNIQUE (run, step)
);

CREATE TABLE pending_parts (
    pending_id  BIGINT  NOT NULL REFERENCES pending(id) ON DELETE CASCADE,
    path        TEXT    NOT NULL CHECK (path <> ''),
    file_id     BIGINT  NOT NULL REFERENCES manifests(id),
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (pending_id, path)
);
CREATE INDEX pending_parts_by_file ON pending_parts(file_id);
