-- ckstore metadata schema, migration 001: runs, content (manifests, tensors, chunks),
-- names (snapshots), and metrics.
--
-- Content and names are kept apart, as git keeps trees apart from refs: a manifest is one
-- safetensors file's content (its header and chunk list), identified by its digest; a snapshot
-- names a manifest as RUN@STEP. The same file put at two steps is one manifest, two snapshots.

-- A training run: a namespace of steps.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL              -- unix time, milliseconds
);

-- A content-addressed chunk of tensor bytes. A row exists only once its blob file
-- objects/<hex[0:2]>/<hex> is durable (fsynced, renamed into place, directory fsynced).
CREATE TABLE chunks (
    id           INTEGER PRIMARY KEY,
    hash         BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),   -- SHA-256 of the raw bytes
    raw_size     INTEGER NOT NULL CHECK (raw_size >= 0),
    stored_size  INTEGER NOT NULL CHECK (stored_size > 0)             -- blob file size, header included
);

-- The content of one safetensors file.
CREATE TABLE manifests (
    id             INTEGER PRIMARY KEY,
    digest         BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),  -- SHA-256 of the canonical manifest
    header         BLOB    NOT NULL,       -- the file's JSON header bytes, exactly as read
    data_length    INTEGER NOT NULL CHECK (data_length >= 0),
    tensor_count   INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);

-- The tensors of a manifest, in data-section order (sorted by data_offsets).
CREATE TABLE tensors (
    manifest_id  INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,         -- 0-based index in data-section order
    name         TEXT    NOT NULL,
    dtype        TEXT    NOT NULL,
    shape        TEXT    NOT NULL,         -- JSON array of integers, e.g. [768,2304]
    data_start   INTEGER NOT NULL,         -- offset in the data section
    byte_length  INTEGER NOT NULL,
    chunk_count  INTEGER NOT NULL,
    PRIMARY KEY (manifest_id, position)
) WITHOUT ROWID;

-- The chunks of each tensor, in order. Concatenating them gives the tensor's bytes.
CREATE TABLE tensor_chunks (
    manifest_id  INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    chunk_index  INTEGER NOT NULL,
    chunk_id     INTEGER NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (manifest_id, position, chunk_index),
    FOREIGN KEY (manifest_id, position) REFERENCES tensors(manifest_id, position) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tensor_chunks_by_chunk ON tensor_chunks(chunk_id);

-- A name for a manifest: RUN@STEP.
CREATE TABLE snapshots (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES runs(id),
    step         INTEGER NOT NULL CHECK (step >= 0),
    manifest_id  INTEGER NOT NULL REFERENCES manifests(id),
    created_at   INTEGER NOT NULL,
    UNIQUE (run_id, step)
);
CREATE INDEX snapshots_by_manifest ON snapshots(manifest_id);

-- Evaluation results and training metrics, per run, step and variant ('raw' for the
-- snapshot itself; e.g. 'lawa-k6-s1000' for an average).
CREATE TABLE metrics (
    run_id       INTEGER NOT NULL REFERENCES runs(id),
    step         INTEGER NOT NULL,
    variant      TEXT    NOT NULL DEFAULT 'raw',
    name         TEXT    NOT NULL,
    value        REAL    NOT NULL,
    recorded_at  INTEGER NOT NULL,
    PRIMARY KEY (run_id, step, variant, name)
) WITHOUT ROWID;
