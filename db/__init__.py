"""The store: SQLAlchemy 2 models and a small repository API (runs, rounds, prompts, generations,
append-only reviewer labels, pairs, snapshots, jobs), SQLite by default and PostgreSQL by URL.

    from db import Store
    store = Store.open()  # argument, else $SAFECB_DB_URL, else sqlite:///<repo>/artifacts/safecb.db
"""

from .store import DEFAULT_SQLITE_PATH, ENV_VAR, QueueFull, QueueLimits, Store, StoreError, default_url, mask_url

__all__ = ["DEFAULT_SQLITE_PATH", "ENV_VAR", "QueueFull", "QueueLimits", "Store", "StoreError", "default_url",
           "mask_url"]
