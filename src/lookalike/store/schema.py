"""The SQLite schema of a collection, as the ordered list of migrations that build it.

The version is ``PRAGMA user_version``; :class:`~.metadata.MetadataDB` runs the entries a
database has not seen yet, one transaction each, so collections written by older releases
open in newer ones. A string entry is split on semicolons (no semicolons inside its
comments); a tuple entry is a list of statements run as they are, for statements with
semicolons of their own (a trigger's body).
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

#: Each entry upgrades the schema from version ``i`` to ``i + 1``.
MIGRATIONS: tuple[str | tuple[str, ...], ...] = (
    """
    CREATE TABLE items (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- stable: never reused, kept across edits
        path       TEXT NOT NULL UNIQUE,
        size       INTEGER NOT NULL,
        mtime_ns   INTEGER NOT NULL,
        hash       TEXT,                               -- blake2b-128 of the file bytes
        width      INTEGER,
        height     INTEGER,
        status     TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        error      TEXT,
        vec_row    INTEGER,                            -- row in the vector file, NULL unless ok
        updated_at REAL NOT NULL DEFAULT (((julianday('now') - 2440587.5) * 86400.0))
    );
    CREATE INDEX items_hash ON items (hash);
    CREATE INDEX items_status ON items (status);
    CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: image traits for duplicate finding (lookalike.images.traits). Existing rows keep NULL
    # and are backfilled lazily, when duplicates are first looked for (store/traits.py).
    """
    ALTER TABLE items ADD COLUMN phash INTEGER;
    ALTER TABLE items ADD COLUMN dhash INTEGER;
    ALTER TABLE items ADD COLUMN phash_mirror INTEGER;
    ALTER TABLE items ADD COLUMN sharpness REAL;
    ALTER TABLE items ADD COLUMN taken REAL;
    ALTER TABLE items ADD COLUMN exif_tags INTEGER
    """,
    # 3: exploring (store/explore_db.py). An item's cluster (-1: noise), top zero-shot label and
    # map position are derived from its vector: NULL until assigned, and reset when it changes.
    """
    ALTER TABLE items ADD COLUMN cluster INTEGER;
    ALTER TABLE items ADD COLUMN label TEXT;
    ALTER TABLE items ADD COLUMN label_score REAL;
    ALTER TABLE items ADD COLUMN map_x REAL;
    ALTER TABLE items ADD COLUMN map_y REAL;
    CREATE INDEX items_cluster ON items (cluster);
    CREATE INDEX items_label ON items (label);
    CREATE TABLE clusters (id INTEGER PRIMARY KEY, name TEXT NOT NULL, centroid BLOB NOT NULL, central TEXT NOT NULL);
    CREATE TABLE label_set (position INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE, prototype BLOB NOT NULL);
    CREATE TABLE item_labels (
        item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
        label   TEXT NOT NULL,
        score   REAL NOT NULL,
        PRIMARY KEY (item_id, label)
    );
    CREATE INDEX item_labels_label ON item_labels (label);
    CREATE INDEX items_no_cluster ON items (vec_row) WHERE cluster IS NULL;
    CREATE INDEX items_no_label ON items (vec_row) WHERE label_score IS NULL;
    CREATE INDEX items_no_position ON items (vec_row) WHERE map_x IS NULL
    """,
    # 4: scaling out (store/item_meta.py). Per-item metadata from tables and WebDataset samples
    # (captions, extra columns), typed as SQLite stores them so --where compares numbers as
    # numbers. source_parts records finished tar shards, skipped while size and mtime match.
    """
    CREATE TABLE item_meta (
        item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
        key     TEXT NOT NULL,
        value,
        PRIMARY KEY (item_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX item_meta_key_value ON item_meta (key, value);
    CREATE TABLE source_parts (
        path     TEXT PRIMARY KEY,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        items    INTEGER NOT NULL,
        done_at  REAL NOT NULL DEFAULT (((julianday('now') - 2440587.5) * 86400.0))
    )
    """,
    # 5: faces and people (store/face_db.py). A face's box and landmarks are display pixels of
    # the original, EXIF-upright image. Its descriptor is row vec_row of faces-<gen>.f32. manual:
    # a person put the face there (pinned: a regroup never moves it). face_scans records which
    # content of an item was scanned. The trigger forgets the faces of an item whose content or
    # status changes, so the next `faces index` scans it again; deleting an item cascades.
    (
        """CREATE TABLE people (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            name       TEXT UNIQUE COLLATE NOCASE,
            created_at REAL NOT NULL DEFAULT (((julianday('now') - 2440587.5) * 86400.0))
        )""",
        """CREATE TABLE faces (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id   INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
            "left"    INTEGER NOT NULL,
            top       INTEGER NOT NULL,
            "right"   INTEGER NOT NULL,
            bottom    INTEGER NOT NULL,
            landmarks TEXT NOT NULL,
            score     REAL NOT NULL,
            size      INTEGER NOT NULL,
            vec_row   INTEGER NOT NULL,
            person_id INTEGER REFERENCES people (id) ON DELETE SET NULL,
            manual    INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX faces_item ON faces (item_id)",
        "CREATE INDEX faces_person ON faces (person_id, score)",
        """CREATE TABLE face_crops (
            face_id INTEGER PRIMARY KEY REFERENCES faces (id) ON DELETE CASCADE,
            jpeg    BLOB NOT NULL
        )""",
        """CREATE TABLE face_scans (
            item_id INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
            hash    TEXT,
            faces   INTEGER NOT NULL,
            error   TEXT
        )""",
        """CREATE TABLE face_rejects (
            face_id   INTEGER NOT NULL REFERENCES faces (id) ON DELETE CASCADE,
            person_id INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
            PRIMARY KEY (face_id, person_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX face_rejects_person ON face_rejects (person_id)",
        """CREATE TRIGGER items_faces_reset AFTER UPDATE OF hash, status ON items
        WHEN OLD.hash IS NOT NEW.hash OR OLD.status IS NOT NEW.status
        BEGIN
            DELETE FROM faces WHERE item_id = NEW.id;
            DELETE FROM face_scans WHERE item_id = NEW.id;
        END""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
