"""Persistence: SQLite (WAL) by default, PostgreSQL via DATABASE_URL, with versioned schema."""

from store.db import Store, open_store

__all__ = ["Store", "open_store"]
