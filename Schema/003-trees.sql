-- ckstore metadata schema, migration 003: snapshots of several files (trees).
--
-- The manifests table now holds every content object, as git's object store does, and `kind`
-- says which:
--   'safetensors'  one safetensors file (header, tensors, chunks); every manifest of an older
--                  store is one, and its digest is unchanged.
--   'bytes'        one opaque file (JSON, tokenizer, .pt, ...): header is empty, data_length is
--                  the file's size, and its chunks are recorded as ONE pseudo tensor row
--                  (position 0, name 'bytes', dtype 'U8', shape [size]) with its tensor_chunks,
--                  so gc, fsck and dedup see them exactly as tensor chunks.
--   'tree'         a directory: header is empty, data_length is the total size of its files,
--                  tensor_count the total tensors of its safetensors files; its files are the
--                  tree_entries rows below. A tree has no tensor rows of its own.
-- A snapshot (or a derived row) names a 'safetensors' or a 'tree' manifest; a tree's entries
-- name 'safetensors' or 'bytes' manifests (trees do not nest). See docs/FORMAT.md.
ALTER TABLE manifests ADD COLUMN kind TEXT NOT NULL DEFAULT 'safetensors'
    CHECK (kind IN ('safetensors', 'bytes', 'tree'));

-- The files of a tree manifest, sorted by path bytes (position 0 first).
CREATE TABLE tree_entries (
    tree_id   INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    position  INTEGER NOT NULL CHECK (position >= 0),
    path      TEXT    NOT NULL CHECK (path <> ''),   -- clean relative path, '/'-separated
    file_id   INTEGER NOT NULL REFERENCES manifests(id),
    PRIMARY KEY (tree_id, position),
    UNIQUE (tree_id, path)
) WITHOUT ROWID;
CREATE INDEX tree_entries_by_file ON tree_entries(file_id);

-- Every content object each manifest stands for: itself, and for a tree its files. Reachability
-- (gc, stats, fsck) follows snapshot or derived row -> manifest_objects.root_id -> object_id ->
-- tensor_chunks.
CREATE VIEW manifest_objects (root_id, object_id) AS
    SELECT id, id FROM manifests
    UNION ALL
    SELECT tree_id, file_id FROM tree_entries;
