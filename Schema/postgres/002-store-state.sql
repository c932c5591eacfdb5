-- ckstore PostgreSQL metadata schema, migration 002: the store's state: the gc epoch, a fencing
-- token for the store lock, and the store's configuration (docs/FORMAT.md, "Locking on PostgreSQL").
--
-- Every transaction that deletes chunk rows (gc, rm, fsck --repair) first increments gc_epoch.
-- A put reads it when it takes the shared store lock and checks, inside its commit transaction,
-- that it has not changed (SELECT … FOR SHARE, which waits for a gc transaction in progress).
-- A put whose lock connection was lost while a gc ran therefore fails instead of recording
-- references to blobs that gc may have deleted.
--
-- config holds the store's configuration (the text of config.json in a local store), written
-- by `ckstore init`; NULL means the defaults.
CREATE TABLE store_state (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    gc_epoch  BIGINT  NOT NULL CHECK (gc_epoch >= 0),
    config    TEXT
);
INSERT INTO store_state (id, gc_epoch) VALUES (1, 0);
