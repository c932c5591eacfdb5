-- ckstore metadata schema, migration 002: derived snapshots (cached query results).
--
-- A derived snapshot is the materialized result of an averaging query. Its content is an
-- ordinary manifest (content-addressed like any other); this row records the recipe and the
-- input digests that produced it. The key is SHA-256 of the recipe, a newline, and the input
-- digests ("sha256:<hex>", oldest first, one per line), so replacing an input with `put --force`
-- changes the key and the stale result is never returned. Derived snapshots can always be
-- recomputed, so gc may drop them.
CREATE TABLE derived (
    id           INTEGER PRIMARY KEY,
    key          BLOB    NOT NULL UNIQUE CHECK (length(key) = 32),
    recipe       TEXT    NOT NULL,          -- canonical query, e.g. "lawa run=r k=6 stride=1000 at=70000"
    inputs       TEXT    NOT NULL,          -- comma-separated input digests, oldest first
    run_id       INTEGER REFERENCES runs(id),   -- the run for run-scoped queries, else NULL
    manifest_id  INTEGER NOT NULL REFERENCES manifests(id),
    created_at   INTEGER NOT NULL
);
CREATE INDEX derived_by_manifest ON derived(manifest_id);
