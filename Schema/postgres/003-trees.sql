-- ckstore PostgreSQL metadata schema, migration 003: snapshots of several files (trees); the
-- SQLite migration Schema/003-trees.sql, translated (same columns and meaning).
--
-- manifests.kind says which content object a manifest row is: 'safetensors' (every manifest of
-- an older store; digest unchanged), 'bytes' (an opaque file: empty header, data_length = its
-- size, its chunks as one pseudo tensor row 'bytes' U8 [size]) or 'tree' (a directory: its files
-- are tree_entries rows; data_length = total size, tensor_count = total tensors). A snapshot or
-- derived row names a 'safetensors' or 'tree' manifest; tree entries name 'safetensors' or
-- 'bytes' manifests (trees do not nest). See docs/FORMAT.md.
ALTER TABLE manifests ADD COLUMN kind TEXT NOT NULL DEFAULT 'safetensors'
    CHECK (kind IN ('safetensors', 'bytes', 'tree'));

-- The files of a tree manifest, sorted by path bytes (position 0 first). A file manifest cannot
-- be deleted while a tree names it (NO ACTION, checked at the end of each statement).
CREATE TABLE tree_entries (
    tree_id   BIGINT  NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    position  INTEGER NOT NULL CHECK (position >= 0),
    path      TEXT    NOT NULL CHECK (path <> ''),
    file_id   BIGINT  NOT NULL REFERENCES manifests(id),
    PRIMARY KEY (tree_id, position),
    UNIQUE (tree_id, path)
);
CREATE INDEX tree_entries_by_file ON tree_entries(file_id);

-- Every content object each manifest stands for: itself, and for a tree its files. Reachability
-- (gc, stats, fsck) follows snapshot or derived row -> manifest_objects.root_id -> object_id ->
-- tensor_chunks.
CREATE VIEW manifest_objects (root_id, object_id) AS
    SELECT id, id FROM manifests
    UNION ALL
    SELECT tree_id, file_id FROM tree_entries;
