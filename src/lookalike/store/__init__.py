"""Collections on disk: the :class:`~lookalike.store.collection.Collection` facade over its
storage (manifest, SQLite, vectors), incremental indexing and the approximate-index policy."""
